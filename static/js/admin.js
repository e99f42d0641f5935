// The panel's only script (CSP allows no inline script): copy buttons,
// confirmation dialogs and dismissible messages.
"use strict";

function copyText(input) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(input.value);
  }
  // Plain-http deployments have no Clipboard API: fall back to a selection copy.
  input.focus();
  input.select();
  return document.execCommand("copy") ? Promise.resolve() : Promise.reject(new Error("copy refused"));
}

document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const input = document.getElementById(copy.dataset.copy);
    const label = copy.textContent;
    copyText(input).then(
      () => { copy.textContent = "Copied"; copy.classList.add("is-done"); },
      () => { input.select(); copy.textContent = "Press Ctrl+C"; },
    ).finally(() => {
      window.setTimeout(() => { copy.textContent = label; copy.classList.remove("is-done"); }, 2000);
    });
    return;
  }
  const dismiss = event.target.closest("[data-dismiss]");
  if (dismiss) {
    dismiss.parentElement.remove();
  }
});

document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

document.addEventListener("focusin", (event) => {
  // A one-time secret is selected whole when clicked, ready to copy by hand.
  if (event.target.matches(".secret-field input")) {
    event.target.select();
  }
});

// A page that reveals a one-time secret answers a POST. Re-point its history
// entry at the plain list, so that reloading shows the list (without the
// secret) instead of re-posting the form and creating another one.
if (document.querySelector("[data-secret-once]")) {
  window.history.replaceState(null, "", window.location.href);
}

// Edit in place: an open row editor is moved into a full-width row under its table row, so the
// form is never squeezed into (or scrolled out of) the actions column. Without this script the
// editor still works inside its cell.
function placeEditor(details) {
  const row = details.closest("tr");
  const form = details.querySelector(".editor-form") || (row && row.nextElementSibling?.querySelector(".editor-form"));
  if (!row || !form) {
    return;
  }
  const next = row.nextElementSibling;
  const holder = next && next.classList.contains("editor-row") ? next : null;
  if (details.open) {
    const line = holder || document.createElement("tr");
    if (!holder) {
      line.className = "editor-row";
      const cell = document.createElement("td");
      cell.colSpan = row.cells.length;
      line.append(cell);
      row.after(line);
    }
    line.cells[0].append(form);
  } else if (holder) {
    details.append(form);
    holder.remove();
  }
}

document.addEventListener("toggle", (event) => {
  if (event.target.matches && event.target.matches("details.editor")) {
    placeEditor(event.target);
  }
}, true);

for (const details of document.querySelectorAll("details.editor[open]")) {
  placeEditor(details);
  // A refused edit comes back open: the field at fault takes the focus, its message read with it.
  const invalid = details.closest("tr").nextElementSibling?.querySelector('[aria-invalid="true"]');
  if (invalid) {
    invalid.focus();
  }
}

// Tables: labelled cells for the phone's card layout, and scroll boxes reachable by keyboard.
document.addEventListener("DOMContentLoaded", () => {
  // On a phone a table.cards shows each row as a card: each cell says which column it is.
  for (const table of document.querySelectorAll("table.cards")) {
    // A head's parts ("Requests" and its "24 h · 7 d" note) joined with a space; innerText would be upper case.
    const heads = [...table.querySelectorAll("thead th")].map((th) =>
      [...th.childNodes].map((node) => node.textContent).join(" ").replace(/\s+/g, " ").trim());
    for (const row of table.querySelectorAll("tbody tr")) {
      [...row.children].forEach((cell, index) => {
        if (!cell.colSpan || cell.colSpan === 1) cell.dataset.label = heads[index] || "";
      });
    }
  }
  // Reachable by keyboard (axe scrollable-region-focusable): arrow keys scroll a wide table.
  for (const wrap of document.querySelectorAll(".table-wrap")) {
    wrap.tabIndex = 0;
  }
});
