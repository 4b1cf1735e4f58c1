/* Start Swagger UI on the OpenAPI document the page names. A file, not an inline script as in Swagger UI's
   own index.html: the page's Content-Security-Policy runs scripts from this origin only. */
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    // No validator badge: it would send our document to validator.swagger.io.
    validatorUrl: null
  });
})();
