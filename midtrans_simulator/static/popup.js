// The simulator's Snap popup: pay with a method and an outcome, then tell the merchant page.
(function () {
  "use strict";

  var sheet = document.getElementById("sheet");
  var labels = JSON.parse(sheet.dataset.labels);
  var result = sheet.dataset.result ? JSON.parse(sheet.dataset.result) : null;
  var method = sheet.dataset.method;
  var form = document.getElementById("pay-form");

  function tell(message) {
    message.snapSimulator = true;
    window.parent.postMessage(message, sheet.dataset.parentOrigin);
  }

  function leave() {
    tell(result ? { type: "result", result: result } : { type: "close" });
  }

  function showError(text) {
    var error = document.getElementById("error");
    error.textContent = text;
    error.hidden = false;
  }

  function row(list, label, value) {
    var term = document.createElement("dt");
    var detail = document.createElement("dd");
    term.textContent = label;
    detail.textContent = value;
    list.append(term, detail);
  }

  function showResult() {
    var code = String(result.status_code);
    var list = document.getElementById("result-details");
    form.hidden = true;
    document.getElementById("result").hidden = false;
    document.getElementById("result-title").textContent =
      code === "200" ? labels.success : code === "201" ? labels.pending : labels.failed;
    list.replaceChildren();
    (result.va_numbers || []).forEach(function (va) {
      row(list, labels.bank, va.bank.toUpperCase());
      row(list, labels.va, va.va_number);
    });
    if (result.permata_va_number) {
      row(list, labels.bank, "PERMATA");
      row(list, labels.va, result.permata_va_number);
    }
    if (result.bill_key) {
      row(list, labels.biller_code, result.biller_code);
      row(list, labels.bill_key, result.bill_key);
    }
    if (result.payment_code) {
      row(list, labels.store, result.store);
      row(list, labels.payment_code, result.payment_code);
    }
    if (result.masked_card) {
      row(list, labels.card, result.masked_card);
    }
    (result.actions || []).forEach(function (action) {
      // As Snap shows a wallet payment: its QR to scan, or its app to open.
      if (action.name === "generate-qr-code") {
        var image = document.createElement("img");
        image.src = action.url;
        image.alt = labels.qr_alt;
        image.className = "qr";
        row(list, labels.qr_alt, "");
        list.lastElementChild.append(image);
      }
    });
    if (code === "201" && result.expiry_time) {
      row(list, labels.expiry, result.expiry_time + " WIB");
    }
    document.getElementById("settle").hidden = !(code === "201" && result.payment_type !== "credit_card");
    document.getElementById("result-title").focus();
  }

  function charge(outcome) {
    var button = document.getElementById("pay-button");
    button.disabled = true;
    document.getElementById("error").hidden = true;
    return fetch(sheet.dataset.chargeUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ method: method, outcome: outcome }),
    })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) {
            throw new Error([].concat(body.status_message).join(" "));
          }
          result = body;
          showResult();
        });
      })
      .catch(function (error) {
        form.hidden = false;
        document.getElementById("result").hidden = true;
        showError(error instanceof TypeError ? labels.network : error.message);
      })
      .finally(function () {
        button.disabled = false;
      });
  }

  document.getElementById("close").addEventListener("click", leave);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      leave();
    }
  });
  if (!form) {
    return;
  }

  var outcome = document.getElementById("outcome");
  function offerOutcomes() {
    var chosen = form.querySelector("input[name=method]:checked");
    var kind = chosen && chosen.dataset.card === "true" ? "card" : "other";
    var first = null;
    Array.prototype.forEach.call(outcome.options, function (option) {
      var fits = option.dataset.kind === kind;
      option.hidden = option.disabled = !fits;
      first = first || (fits ? option : null);
    });
    if (outcome.selectedOptions.length === 0 || outcome.selectedOptions[0].disabled) {
      first.selected = true;
    }
  }
  form.addEventListener("change", function (event) {
    if (event.target.name === "method") {
      offerOutcomes();
    }
  });
  offerOutcomes();

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    method = form.querySelector("input[name=method]:checked").value;
    charge(outcome.value);
  });
  document.getElementById("settle").addEventListener("click", function () {
    charge("settlement");
  });
  document.getElementById("done").addEventListener("click", leave);
  if (result) {
    showResult();
  }
})();
