// Stand-in for Midtrans's snap.js, served by the TiketQ Midtrans simulator: no real payments.
// Same surface as the real script: window.snap.pay(token, options), snap.embed(token, options),
// snap.show() and snap.hide(); options onSuccess, onPending, onError, onClose and language.
(function () {
  "use strict";

  var script = document.currentScript || document.querySelector("script[src$='/snap/snap.js']");
  var clientKey = script.getAttribute("data-client-key") || "";
  var base = script.src.replace(/\/snap\.js(\?.*)?$/, "");
  var hostOrigin = new URL(base).origin;
  var frame = null;
  var overlay = null;
  var loading = null;
  var callbacks = {};

  // Styles go through the CSSOM, which a page's style-src does not restrict.
  function styled(tag, styles) {
    var element = document.createElement(tag);
    Object.assign(element.style, styles);
    return element;
  }

  function popupUrl(token, options) {
    var url = new URL(base + "/popup/" + encodeURIComponent(token));
    url.searchParams.set("client_key", clientKey);
    url.searchParams.set("origin", window.location.origin);
    url.searchParams.set("language", options.language === "en" ? "en" : "id");
    return url.toString();
  }

  function close() {
    if (overlay) {
      overlay.remove();
    } else if (frame) {
      frame.remove();
    }
    overlay = frame = null;
  }

  function open(token, options, container) {
    close();
    callbacks = options || {};
    frame = styled("iframe", { width: "100%", height: "100%", border: "0", background: "#fff" });
    frame.title = "Midtrans Snap (simulator)";
    frame.src = popupUrl(token, callbacks);
    if (container) {
      Object.assign(frame.style, { minWidth: "320px", height: "560px" });
      container.appendChild(frame);
      return;
    }
    overlay = styled("div", {
      position: "fixed",
      inset: "0",
      zIndex: "2147483647",
      display: "flex",
      alignItems: "center",
      justifyContent: "center",
      background: "rgba(15, 23, 42, 0.6)",
    });
    var sheet = styled("div", {
      width: "100%",
      maxWidth: "420px",
      height: "100%",
      maxHeight: "640px",
      overflow: "hidden",
      borderRadius: "10px",
      background: "#fff",
    });
    sheet.appendChild(frame);
    overlay.appendChild(sheet);
    document.body.appendChild(overlay);
    frame.focus();
  }

  window.addEventListener("message", function (event) {
    if (!frame || event.source !== frame.contentWindow || event.origin !== hostOrigin) {
      return;
    }
    var message = event.data || {};
    if (!message.snapSimulator) {
      return;
    }
    var options = callbacks;
    close();
    if (message.type === "close") {
      if (options.onClose) {
        options.onClose();
      }
      return;
    }
    var result = message.result;
    var code = String(result.status_code);
    var callback = code === "200" ? options.onSuccess : code === "201" ? options.onPending : options.onError;
    if (callback) {
      callback(result);
    } else if (result.finish_redirect_url) {
      // Without a callback, Snap sends the browser to the merchant's finish page.
      window.location.href = result.finish_redirect_url;
    }
  });

  window.snap = {
    pay: function (token, options) {
      open(token, options);
    },
    embed: function (token, options) {
      var container = document.getElementById(options.embedId);
      if (!container) {
        throw new Error("snap.embed: no element with id " + options.embedId);
      }
      open(token, options, container);
    },
    show: function () {
      if (!loading) {
        loading = styled("div", { position: "fixed", inset: "0", background: "rgba(255, 255, 255, 0.7)" });
        loading.setAttribute("aria-busy", "true");
        document.body.appendChild(loading);
      }
    },
    hide: function () {
      if (loading) {
        loading.remove();
        loading = null;
      }
    },
  };
})();
