// Starts Swagger UI on /docs (a file, not an inline script, so the page keeps a strict CSP).
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
