// The checkout and receipt pages' behaviour. Snap's callbacks are only hints: whatever they
// say, the page asks this service for the payment's status and shows that.
(function () {
  "use strict";

  var root = document.querySelector("main[data-page]");
  if (!root) {
    return;
  }
  var POLL_MS = 3000;

  function fetchStatus() {
    return fetch(root.dataset.statusUrl, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    }).then(function (response) {
      if (!response.ok) {
        throw new Error("status " + response.status);
      }
      return response.json();
    });
  }

  function isOpen(status) {
    return status.status === "pending" || status.status === "processing";
  }

  function startCountdowns(onZero) {
    var timers = document.querySelectorAll("[data-seconds-left]");
    if (!timers.length) {
      return;
    }
    // Counted from the server's figure, so a phone with a wrong clock still counts right.
    var loadedAt = Date.now();
    function tick() {
      var ended = false;
      timers.forEach(function (timer) {
        var elapsed = Math.floor((Date.now() - loadedAt) / 1000);
        var seconds = Math.max(0, Number(timer.dataset.secondsLeft) - elapsed);
        var parts = [Math.floor(seconds / 3600), Math.floor(seconds / 60) % 60, seconds % 60];
        timer.textContent = parts.map(function (n) { return String(n).padStart(2, "0"); }).join(":");
        ended = ended || seconds === 0;
      });
      if (ended) {
        window.clearInterval(interval);
        onZero();
      }
    }
    var interval = window.setInterval(tick, 1000);
    tick();
  }

  function show(id, visible) {
    var element = document.getElementById(id);
    if (element) {
      element.hidden = !visible;
    }
  }

  function checkoutPage() {
    // Once the time is up the server offers a fresh attempt instead of the pay button.
    startCountdowns(function () { window.location.reload(); });
    var pay = document.getElementById("pay");
    var token = root.dataset.snapToken;
    if (!pay || !token) {
      return;
    }

    function toReceipt() {
      show("pay-closed", false);
      show("pay-checking", true);
      fetchStatus()
        .then(function (status) { window.location.assign(status.receipt_url); })
        .catch(function () { window.location.assign(root.dataset.receiptUrl); });
    }

    function closed() {
      pay.textContent = pay.dataset.reopenLabel;
      show("pay-closed", true);
      fetchStatus()
        .then(function (status) {
          // The same token works again while the payment is open; otherwise show why not.
          if (!isOpen(status) || Date.parse(status.expires_at) <= Date.now()) {
            window.location.reload();
          }
        })
        .catch(function () {});
    }

    function snapReady() {
      return window.snap && typeof window.snap.pay === "function";
    }

    function openSnap() {
      show("pay-unavailable", false);
      window.snap.pay(token, {
        language: root.dataset.language,
        onSuccess: toReceipt,
        onPending: toReceipt,
        onError: toReceipt,
        onClose: closed,
      });
    }

    pay.addEventListener("click", function (event) {
      if (!snapReady()) {
        // Without Snap.js the link still leads to Midtrans's own payment page.
        show("pay-unavailable", true);
        return;
      }
      event.preventDefault();
      openSnap();
    });

    if (root.dataset.autopay === "true" && snapReady()) {
      // Arrived from "Pay again": the tap that brought the traveller here was the pay tap.
      // Once: a reload or a way back shows the page with its button, not Snap again.
      window.history.replaceState(null, "", window.location.pathname);
      openSnap();
    }
  }

  function copyButtons() {
    // Progressive: without a clipboard (no script, an insecure page) the code is plain text.
    if (!navigator.clipboard || !window.isSecureContext) {
      return;
    }
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var code = document.getElementById(button.dataset.copy);
      var said = document.getElementById(button.dataset.copy + "-copied");
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard
          .writeText(code.textContent.trim())
          .then(function () { said.textContent = button.dataset.done; })
          .catch(function () { said.textContent = button.dataset.failed; });
      });
    });
  }

  function receiptPage() {
    copyButtons();
    var printButton = document.getElementById("print");
    if (printButton) {
      printButton.hidden = false;
      printButton.addEventListener("click", function () { window.print(); });
    }
    if (root.dataset.watch !== "true") {
      return;
    }
    startCountdowns(function () { window.location.reload(); });
    var shown = [root.dataset.status, root.dataset.statusDetail, root.dataset.paymentType].join("|");
    function poll() {
      fetchStatus()
        .then(function (status) {
          var now = [status.status, status.status_detail || "", status.payment_type || ""].join("|");
          if (now !== shown) {
            window.location.reload();
          } else {
            window.setTimeout(poll, POLL_MS);
          }
        })
        .catch(function () { window.setTimeout(poll, POLL_MS * 2); });
    }
    window.setTimeout(poll, POLL_MS);
  }

  if (root.dataset.page === "checkout") {
    checkoutPage();
  } else if (root.dataset.page === "receipt") {
    receiptPage();
  }
})();
