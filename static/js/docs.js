// Starts Swagger UI on /docs from this file: the CSP allows no inline script.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  // Swagger UI's deep linking owns the URL hash: the skip link moves focus itself.
  const skip = document.querySelector(".skip-link");
  const content = document.getElementById("content");
  if (skip && content) {
    skip.addEventListener("click", (event) => {
      event.preventDefault();
      content.focus();
    });
  }
  const root = document.getElementById("swagger-ui");
  if (!root || !window.SwaggerUIBundle) {
    return;
  }
  window.SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    displayRequestDuration: true,
    tryItOutEnabled: false,
    // Same-origin calls carry the session cookie; scripts use "Authorize" with a token instead.
    withCredentials: true,
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
