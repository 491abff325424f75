/* Swagger UI from the vendored bundle (no CDN): works offline; no inline script (CSP). */
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  layout: "BaseLayout",
  presets: [SwaggerUIBundle.presets.apis],
  showExtensions: true,
  // the token pasted into "Authorize" lives only in this page's memory
  persistAuthorization: false,
  validatorUrl: null,
});
