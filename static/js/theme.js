// Dark mode on every page (docs/contract.md §14): the visitor's choice (the "Dark mode" toggle,
// kept in localStorage), else the system's prefers-color-scheme, followed live. Loaded in <head>
// without defer so the page never flashes the other theme; the CSP allows no inline script.
"use strict";

(() => {
  const KEY = "seadragon-theme";
  const system = window.matchMedia("(prefers-color-scheme: dark)");
  const chosen = () => {
    try {
      const value = window.localStorage.getItem(KEY);
      return value === "dark" || value === "light" ? value : null;
    } catch (error) {
      return null; // storage refused (private mode): follow the system
    }
  };
  const current = () => chosen() || (system.matches ? "dark" : "light");
  const apply = () => {
    const theme = current();
    document.documentElement.dataset.theme = theme;
    for (const button of document.querySelectorAll("[data-theme-toggle]")) {
      button.setAttribute("aria-pressed", String(theme === "dark"));
    }
  };
  apply();
  system.addEventListener("change", apply);
  document.addEventListener("DOMContentLoaded", () => {
    apply();
    for (const button of document.querySelectorAll("[data-theme-toggle]")) {
      button.addEventListener("click", () => {
        const next = current() === "dark" ? "light" : "dark";
        try {
          // Choosing what the system already gives forgets the choice: the page follows the system again.
          if (next === (system.matches ? "dark" : "light")) window.localStorage.removeItem(KEY);
          else window.localStorage.setItem(KEY, next);
        } catch (error) {
          document.documentElement.dataset.theme = next;
        }
        apply();
      });
    }
  });
})();
