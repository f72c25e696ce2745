// Starts Swagger UI on the spec named by the page's data-spec-url, so the page has no inline
// script and a Content-Security-Policy of script-src 'self' holds.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
  });
})();
