// Starts Swagger UI on /api/v1/docs without inline script, so the page keeps a strict CSP.
window.addEventListener("load", function () {
  window.SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
  });
});
