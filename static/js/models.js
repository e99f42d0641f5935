// The Models page (docs/contract.md §12): polls the gateway's /api/admin/models and edits each
// model's profile in place with PUT (Save) or DELETE (Remove profile) on
// /api/admin/models/{model}/profile, with the page's CSRF token. A refused field gets its
// message under it. Text only through textContent; rows are not redrawn while an editor is open.
"use strict";

(() => {
  const panel = document.getElementById("models");
  if (!panel) {
    return;
  }
  const MODELS_URL = panel.dataset.modelsUrl;
  const POLL_MS = Number(panel.dataset.pollMs) || 5000;
  const FETCH_TIMEOUT_MS = 5000;
  const defaults = JSON.parse(panel.dataset.defaults || "{}");
  const rows = panel.querySelector("[data-models-rows]");
  const note = panel.querySelector("[data-models-note]");
  const csrfField = document.querySelector('input[name="csrf_token"]');
  const csrf = csrfField ? csrfField.value : "";
  // Longest first, so "keep_alive_min ..." is not taken for "keep_alive ...".
  const FIELDS = ["keep_alive_min", "keep_alive_max", "keep_alive", "load_options", "max_parallel"];
  const LABELS = {
    load_options: ["Load options", "client: as sent · server: Ollama decides · pinned: the options below"],
    pinned: ["Pinned options", "e.g. num_ctx=8192, num_batch=512 (with load options: pinned)"],
    keep_alive: ["Keep-alive", "Used when a request sends none, e.g. 30m. Empty: as sent."],
    keep_alive_min: ["Keep-alive at least", "e.g. 5m; keep_alive 0 (unload now) is raised to it."],
    keep_alive_max: ["Keep-alive at most", "e.g. 2h; -1 (forever) is lowered to it."],
    max_parallel: ["Max parallel", "Requests for this model running at once. Empty: no cap."],
  };
  let busy = false;

  function cell(text, className, label) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) {
      td.className = className;
    }
    if (label) {
      td.dataset.label = label; // shown before the value where the table becomes cards (phones)
    }
    return td;
  }

  function duration(value) {
    return value === null || value === undefined ? null : String(value);
  }

  function summary(profile) {
    if (!profile) {
      const parts = [`defaults: ${defaults.load_options || "client"}`];
      if (defaults.keep_alive_min !== null || defaults.keep_alive_max !== null) {
        parts.push(`keep-alive ${duration(defaults.keep_alive_min) || "0"}–${duration(defaults.keep_alive_max) || "∞"}`);
      }
      return parts.join(" · ");
    }
    const options = profile.load_options;
    const parts = [typeof options === "string" ? options : `pinned ${pinnedText(options) || "(none)"}`];
    if (profile.keep_alive !== null) {
      parts.push(`keep-alive ${duration(profile.keep_alive)}`);
    }
    if (profile.keep_alive_min !== null || profile.keep_alive_max !== null) {
      parts.push(`clamped ${duration(profile.keep_alive_min) || "0"}–${duration(profile.keep_alive_max) || "∞"}`);
    }
    if (profile.max_parallel !== null) {
      parts.push(`max ${profile.max_parallel} at once`);
    }
    return parts.join(" · ");
  }

  function pinnedText(options) {
    return Object.entries(options).map(([key, value]) => `${key}=${value}`).join(", ");
  }

  function field(model, name, value, control) {
    const [label, hint] = LABELS[name];
    const box = `edit-${model.replace(/[^A-Za-z0-9_-]/g, "_")}-${name}`;
    const wrap = document.createElement("div");
    wrap.className = "field";
    wrap.dataset.field = name;
    const labelEl = document.createElement("label");
    labelEl.htmlFor = box;
    labelEl.textContent = label;
    let input;
    if (control === "select") {
      input = document.createElement("select");
      for (const choice of ["client", "server", "pinned"]) {
        const option = document.createElement("option");
        option.value = choice;
        option.textContent = choice;
        input.append(option);
      }
    } else {
      input = document.createElement("input");
      input.type = control === "number" ? "number" : "text";
      if (control === "number") {
        input.min = "1";
        input.inputMode = "numeric";
      }
    }
    input.id = box;
    input.name = name;
    input.value = value;
    const help = document.createElement("p");
    help.className = "field-hint";
    help.id = `${box}-hint`;
    help.textContent = hint;
    input.setAttribute("aria-describedby", help.id);
    wrap.append(labelEl, input, help);
    return wrap;
  }

  function editor(entry) {
    const profile = entry.profile || {};
    const options = profile.load_options === undefined ? "client" : profile.load_options;
    const details = document.createElement("details");
    details.className = "editor";
    const open = document.createElement("summary");
    open.className = "button button-small button-ghost";
    open.textContent = "Edit";
    open.setAttribute("aria-label", `Edit the profile of ${entry.model}`);
    const form = document.createElement("form");
    form.className = "editor-form";
    form.noValidate = true;
    form.dataset.model = entry.model;
    const text = (value) => (value === null || value === undefined ? "" : String(value));
    form.append(
      field(entry.model, "load_options", typeof options === "string" ? options : "pinned", "select"),
      field(entry.model, "pinned", typeof options === "string" ? "" : pinnedText(options), "text"),
      field(entry.model, "keep_alive", text(profile.keep_alive), "text"),
      field(entry.model, "keep_alive_min", text(profile.keep_alive_min), "text"),
      field(entry.model, "keep_alive_max", text(profile.keep_alive_max), "text"),
      field(entry.model, "max_parallel", text(profile.max_parallel), "number"),
    );
    const buttons = document.createElement("div");
    buttons.className = "field field-button";
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "button button-primary button-small";
    save.textContent = "Save";
    buttons.append(save);
    if (entry.profile) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "button button-ghost button-small";
      remove.textContent = "Remove profile";
      remove.addEventListener("click", () => send(form, "DELETE"));
      buttons.append(remove);
    }
    form.append(buttons);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      send(form, "PUT");
    });
    details.append(open, form);
    return details;
  }

  function number(text) {
    return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
  }

  function profileOf(form) {
    const value = (name) => form.elements[name].value.trim();
    let loadOptions = value("load_options");
    if (loadOptions === "pinned") {
      loadOptions = {};
      for (const pair of value("pinned").split(/[\s,]+/).filter(Boolean)) {
        const [key, raw = ""] = pair.split("=");
        loadOptions[key] = raw === "true" ? true : raw === "false" ? false : number(raw);
      }
    }
    const maybe = (name) => (value(name) === "" ? null : number(value(name)));
    return {
      load_options: loadOptions,
      keep_alive: maybe("keep_alive"),
      keep_alive_min: maybe("keep_alive_min"),
      keep_alive_max: maybe("keep_alive_max"),
      max_parallel: maybe("max_parallel"),
    };
  }

  function showError(form, message) {
    for (const old of form.querySelectorAll(".field-error")) {
      old.remove();
    }
    for (const input of form.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
    }
    if (!message) {
      return;
    }
    const name = FIELDS.find((candidate) => message.startsWith(candidate)) || "load_options";
    const wrap = form.querySelector(`[data-field="${name}"]`);
    const input = wrap.querySelector("input, select");
    const error = document.createElement("p");
    error.className = "field-error";
    error.id = `${input.id}-error`;
    error.textContent = message;
    wrap.append(error);
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", error.id);
    input.focus();
  }

  async function send(form, method) {
    const model = form.dataset.model;
    busy = true;
    try {
      const response = await fetch(`/api/admin/models/${encodeURIComponent(model)}/profile`, {
        method,
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: method === "PUT" ? JSON.stringify(profileOf(form)) : undefined,
      });
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) {
        showError(form, answer.error || `the gateway answered ${response.status}`);
        return;
      }
      note.textContent = method === "PUT" ? `Saved the profile of ${model}` : `Removed the profile of ${model}`;
      const details = form.closest("tr")?.previousElementSibling?.querySelector("details.editor")
        || form.closest("details.editor");
      if (details) {
        details.open = false;
      }
      busy = false;
      await refresh();
    } catch (error) {
      showError(form, `could not reach the panel: ${error.message}`);
    } finally {
      busy = false;
    }
  }

  function render(entries) {
    if (!entries.length) {
      const tr = document.createElement("tr");
      const empty = cell("No backend lists a model yet", "muted");
      empty.colSpan = 7;
      tr.append(empty);
      rows.replaceChildren(tr);
      return;
    }
    rows.replaceChildren(
      ...entries.map((entry) => {
        const tr = document.createElement("tr");
        tr.dataset.model = entry.model;
        const loaded = document.createElement("td");
        loaded.dataset.label = "Loaded on";
        if (entry.loaded_on.length) {
          for (const url of entry.loaded_on) {
            const badge = document.createElement("span");
            badge.className = "badge badge-success";
            badge.textContent = url;
            loaded.append(badge, " ");
          }
        } else {
          loaded.textContent = "not loaded";
          loaded.className = "muted";
          loaded.dataset.label = "Loaded on";
        }
        const actions = document.createElement("td");
        actions.className = "actions-col";
        actions.append(editor(entry));
        tr.append(
          cell(entry.model, "mono"),
          cell(entry.backends.join(", ") || "—", "model-detail", "Backends"),
          loaded,
          cell(summary(entry.profile), "policy", "Profile"),
          cell(String(entry.loads_24h), "num", "Loads (24 h)"),
          cell(String(entry.adjusted_24h), "num", "Adjusted (24 h)"),
          actions,
        );
        return tr;
      }),
    );
  }

  async function refresh() {
    if (busy || rows.querySelector("details.editor[open]") || panel.querySelector(".editor-row")) {
      return; // never redraw under an admin's hands
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    try {
      const response = await fetch(MODELS_URL, { credentials: "same-origin", signal: controller.signal });
      if (!response.ok) {
        note.textContent = `the gateway answered ${response.status}`;
        return;
      }
      render(await response.json());
    } catch (error) {
      note.textContent = "the gateway is not answering";
    } finally {
      clearTimeout(timer);
    }
  }

  refresh();
  setInterval(refresh, POLL_MS);
})();
