// The dashboard's queue table: polls /api/admin/queue every second (same origin, session cookie)
// and cancels a request with DELETE /api/admin/queue/{id} and the page's CSRF token. Text only
// through textContent: "who" may carry an end user's header value.
"use strict";

(() => {
  const panel = document.getElementById("live-queue");
  if (!panel) {
    return;
  }
  const QUEUE_URL = panel.dataset.queueUrl;
  const POLL_MS = Number(panel.dataset.pollMs) || 1000;
  const HIDDEN_POLL_MS = 5000;
  const FETCH_TIMEOUT_MS = 5000;
  const rows = panel.querySelector("[data-queue-rows]");
  const note = panel.querySelector("[data-queue-note]");
  const csrfField = document.querySelector('input[name="csrf_token"]');
  const csrf = csrfField ? csrfField.value : "";
  const cancelling = new Set();

  function seconds(value) {
    if (value === null || value === undefined) {
      return "—";
    }
    if (value < 10) {
      return `${value.toFixed(1)} s`;
    }
    if (value < 60) {
      return `${Math.round(value)} s`;
    }
    const minutes = Math.floor(value / 60);
    return `${minutes} min ${String(Math.round(value - minutes * 60)).padStart(2, "0")} s`;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) {
      td.className = className;
    }
    return td;
  }

  function row(entry) {
    const tr = document.createElement("tr");
    tr.dataset.requestId = entry.request_id;
    tr.dataset.state = entry.state;
    const state = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = `badge badge-${entry.state === "active" ? "success" : "info"}`;
    badge.textContent = entry.state;
    state.append(badge);
    tr.append(
      state,
      cell(entry.name || entry.who || "—"),
      cell(entry.model || "—", "mono queue-detail"),
      cell(entry.endpoint || "—", "mono queue-detail"),
      cell(seconds(entry.waited_s), "num"),
      cell(entry.position === null ? "—" : String(entry.position), "num queue-detail"),
      cell(entry.eta_s === null ? "—" : seconds(entry.eta_s), "num queue-detail"),
    );
    const actions = document.createElement("td");
    actions.className = "actions-col";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button button-small button-danger";
    button.dataset.cancel = entry.request_id;
    button.textContent = "Cancel";
    button.setAttribute("aria-label", `Cancel ${entry.state} request ${entry.request_id}`);
    button.disabled = cancelling.has(entry.request_id);
    actions.append(button);
    tr.append(actions);
    return tr;
  }

  function render(entries) {
    if (!entries.length) {
      const empty = cell("Nothing waiting or running", "muted");
      empty.colSpan = 8;
      const tr = document.createElement("tr");
      tr.append(empty);
      rows.replaceChildren(tr);
      return;
    }
    rows.replaceChildren(...entries.map(row));
  }

  async function poll() {
    try {
      const response = await fetch(QUEUE_URL, {
        credentials: "same-origin",
        cache: "no-store",
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      });
      if (response.ok) {
        render(await response.json());
      } else {
        note.textContent = `Queue unavailable (HTTP ${response.status})`;
      }
    } catch (error) {
      note.textContent = "Queue unavailable: no answer from the gateway";
    }
    setTimeout(poll, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
  }

  rows.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-cancel]");
    if (!button) {
      return;
    }
    const id = button.dataset.cancel;
    // A running answer is cut off mid-way: ask first (a waiting one only loses its place).
    const row = button.closest("tr");
    if (row && row.dataset.state === "active" &&
        !window.confirm(`Cancel the running request ${id}? Its answer stops now and cannot be resumed.`)) {
      return;
    }
    cancelling.add(id);
    button.disabled = true;
    try {
      const response = await fetch(`${QUEUE_URL}/${encodeURIComponent(id)}`, {
        method: "DELETE",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrf },
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      });
      if (response.ok || response.status === 404) {
        button.closest("tr").remove(); // gone either way; the next poll confirms
        note.textContent = response.ok ? "Request cancelled" : "That request had already finished";
      } else {
        const body = await response.json().catch(() => ({}));
        note.textContent = `Cancel failed: ${body.error || `HTTP ${response.status}`}`;
        button.disabled = false;
      }
    } catch (error) {
      note.textContent = "Cancel failed: no answer from the gateway";
      button.disabled = false;
    } finally {
      cancelling.delete(id);
    }
  });

  poll();
})();
