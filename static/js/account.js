// The home page (docs/contract.md §9, §14): API addresses from PUBLIC_URL, else from this page's
// own origin (never from a Host header the server was sent); the user's personal API keys (list,
// create — shown once with client examples filled in — and revoke) through /account/api/keys.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const urls = document.querySelector(".api-urls");
  const example = document.querySelector("[data-example]");
  const base = (urls && urls.dataset.base) || window.location.origin;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  let model = "MODEL";

  if (urls && example) {
    for (const code of urls.querySelectorAll("[data-url]")) code.textContent = base + code.dataset.url;
    example.value = example.value.replace(/^BASE=.*$/m, "BASE=" + base);
  }
  // A model name for the examples: a model list is metadata, never counted as usage.
  fetch("/api/tags", { credentials: "same-origin" })
    .then((response) => (response.ok ? response.json() : null))
    .then((tags) => {
      const first = tags && Array.isArray(tags.models) && tags.models[0];
      if (first && typeof first.name === "string") {
        model = first.name;
        if (example) example.value = example.value.replace('"model": "MODEL"', '"model": ' + JSON.stringify(model));
      }
    })
    .catch(() => {});

  const keys = document.querySelector("[data-keys]");
  const form = document.querySelector("[data-key-form]");
  const error = document.querySelector("[data-key-error]");
  const reveal = document.querySelector("[data-key-reveal]");
  if (!keys || !form) return;

  const api = (path, options = {}) =>
    fetch("/account/api/keys" + path, {
      credentials: "same-origin",
      ...options,
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, ...(options.headers || {}) },
    }).then(async (response) => {
      const data = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(data.error || "The server answered " + response.status + ".");
      return data;
    });

  const when = (iso) => (iso ? iso.slice(0, 16).replace("T", " ") + " UTC" : "—");
  const cell = (text, label) => {
    const td = document.createElement("td");
    td.textContent = text;
    td.dataset.label = label;
    return td;
  };

  function render(list) {
    keys.replaceChildren();
    if (!list.length) {
      const row = keys.insertRow();
      const td = cell("No keys yet: make one above.", "");
      td.colSpan = 7;
      td.className = "muted";
      row.append(td);
      return;
    }
    for (const key of list) {
      const row = keys.insertRow();
      row.dataset.keyId = key.id;
      if (!key.is_active) row.className = "is-revoked";
      const status = cell("", "Status");
      const badge = document.createElement("span");
      badge.className = "badge " + (key.is_active ? "badge-success" : "badge-neutral");
      badge.textContent = key.is_active ? "Active" : key.revoked_at ? "Revoked" : "Expired";
      status.append(badge);
      const actions = cell("", "Actions");
      actions.className = "actions-col";
      if (key.is_active) {
        const revoke = document.createElement("button");
        revoke.type = "button";
        revoke.className = "button button-danger button-small";
        revoke.textContent = "Revoke";
        revoke.setAttribute("aria-label", "Revoke " + key.name);
        revoke.addEventListener("click", () => {
          if (!window.confirm("Revoke the key “" + key.name + "”? Programs using it stop working.")) return;
          api("/" + key.id, { method: "DELETE" }).then(load, show);
        });
        actions.append(revoke);
      }
      row.append(
        cell(key.name, "Name"),
        cell(key.prefix + "…", "Key"),
        cell(when(key.created_at), "Created"),
        cell(key.expires_at ? when(key.expires_at) : "Never", "Expires"),
        cell(key.last_used ? when(key.last_used) : "Never", "Last used"),
        status,
        actions,
      );
      row.cells[1].classList.add("mono");
    }
  }

  function show(problem) {
    error.textContent = problem.message;
    error.hidden = false;
  }

  function load() {
    return api("").then(render, show);
  }

  function examples(key) {
    const filled = {
      continue: [
        "models:",
        "  - name: Seadragon " + model,
        "    provider: ollama",
        "    model: " + model,
        "    apiBase: " + base,
        "    apiKey: " + key,
        "    roles: [chat, edit, apply]",
      ],
      cline: [
        "API Provider: OpenAI Compatible",
        "Base URL: " + base + "/v1",
        "API Key: " + key,
        "Model ID: " + model,
      ],
      codex: [
        "# export SEADRAGON_API_KEY=" + key,
        'model = "' + model + '"',
        'model_provider = "seadragon"',
        "",
        "[model_providers.seadragon]",
        'name = "Seadragon Gateway"',
        'base_url = "' + base + '/v1"',
        'env_key = "SEADRAGON_API_KEY"',
        'wire_api = "responses"',
      ],
      openai: [
        "from openai import OpenAI",
        "",
        'client = OpenAI(base_url="' + base + '/v1", api_key="' + key + '")',
        "reply = client.chat.completions.create(",
        '    model="' + model + '", messages=[{"role": "user", "content": "Hello!"}]',
        ")",
        "print(reply.choices[0].message.content)",
      ],
      curl: [
        "curl " + base + '/v1/chat/completions -H "Authorization: Bearer ' + key + '" \\',
        "  -H 'Content-Type: application/json' \\",
        "  -d '{\"model\": " + JSON.stringify(model) + ', "messages": [{"role": "user", "content": "Hello!"}]}\'',
      ],
    };
    for (const area of reveal.querySelectorAll("[data-client]")) {
      area.value = filled[area.dataset.client].join("\n");
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    error.hidden = true;
    const name = form.elements.name.value.trim();
    if (!name) {
      show(new Error("Name: give the key a name, such as the program or machine that uses it."));
      form.elements.name.focus();
      return;
    }
    const body = { name };
    const day = form.elements.expires_at.value;
    if (day) body.expires_at = day + "T23:59:59Z";
    api("", { method: "POST", body: JSON.stringify(body) }).then((created) => {
      reveal.querySelector("[data-new-key]").value = created.key;
      examples(created.key);
      reveal.hidden = false;
      reveal.focus();
      form.reset();
      return load();
    }, show);
  });

  load();
});
