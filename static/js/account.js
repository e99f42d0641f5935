// The home page: API addresses from PUBLIC_URL, else from this page's own origin
// (never from a Host header the server was sent), and a model name in the example.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const urls = document.querySelector(".api-urls");
  const example = document.querySelector("[data-example]");
  if (!urls || !example) return;
  const base = urls.dataset.base || window.location.origin;
  for (const code of urls.querySelectorAll("[data-url]")) {
    code.textContent = base + code.dataset.url;
  }
  example.value = example.value.replace(/^BASE=.*$/m, "BASE=" + base);
  fetch("/api/tags", { credentials: "same-origin" })
    .then((response) => (response.ok ? response.json() : null))
    .then((tags) => {
      const first = tags && Array.isArray(tags.models) && tags.models[0];
      if (first && typeof first.name === "string") {
        example.value = example.value.replace('"model": "MODEL"', '"model": ' + JSON.stringify(first.name));
      }
    })
    .catch(() => {});
});
