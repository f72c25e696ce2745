"""The Snap.js stand-in: the script a merchant page loads, its payment popup, and the charge call.

Like Midtrans's snap.js, the script opens the payment page in a frame over the merchant page and
reports the result to the callbacks passed to `snap.pay`; the frame talks to its own host only.
"""

import re
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, render_template_string, request, send_from_directory, url_for
from flask.typing import ResponseReturnValue

from . import lifecycle
from .checkout_page import _return_url
from .methods import offered_methods
from .service import Simulator, UnknownChoice, current_simulator
from .store import Transaction
from .wire import json_response, utc_now

bp = Blueprint("snapjs", __name__, url_prefix="/snap")

_STATIC = Path(__file__).with_name("static")
# Where the popup may post its result: the merchant page's origin, exactly.
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$")
# Outcomes the popup offers per kind of method, the usual one first.
CARD_OUTCOMES = ("capture", "challenge", "deny", "failure")
OTHER_OUTCOMES = ("pending", "settlement", "deny", "expire", "failure")
_RESULT_MESSAGES = {
    "200": "Success, transaction is successful",
    "201": "Success, transaction is created, waiting for payment",
}

_TEXTS = {
    "en": {
        "banner": "Midtrans simulator: no real money moves.",
        "order": "Order ID",
        "method": "Payment method",
        "outcome": "Simulated outcome",
        "pay": "Pay",
        "close": "Close",
        "done": "Back to merchant",
        "settle": "Simulate the payment arriving",
        "success": "Payment successful",
        "pending": "Waiting for your payment",
        "failed": "Payment failed",
        "bank": "Bank",
        "va": "Virtual account number",
        "biller_code": "Biller code",
        "bill_key": "Bill key",
        "store": "Store",
        "payment_code": "Payment code",
        "card": "Card",
        "qr_alt": "QR code",
        "expiry": "Pay before",
        "network": "The simulator could not be reached.",
        "pending_outcome": "Pending: get a VA number or payment code",
        "settlement_outcome": "Paid at once",
        "capture_outcome": "Card approved",
        "challenge_outcome": "Card held for fraud review",
        "deny_outcome": "Denied",
        "expire_outcome": "Expired",
        "failure_outcome": "Failure",
    },
    "id": {
        "banner": "Simulator Midtrans: tidak ada uang sungguhan yang berpindah.",
        "order": "ID pesanan",
        "method": "Metode pembayaran",
        "outcome": "Hasil simulasi",
        "pay": "Bayar",
        "close": "Tutup",
        "done": "Kembali ke merchant",
        "settle": "Simulasikan pembayaran masuk",
        "success": "Pembayaran berhasil",
        "pending": "Menunggu pembayaran Anda",
        "failed": "Pembayaran gagal",
        "bank": "Bank",
        "va": "Nomor virtual account",
        "biller_code": "Kode perusahaan",
        "bill_key": "Kode pembayaran",
        "store": "Gerai",
        "payment_code": "Kode pembayaran",
        "card": "Kartu",
        "qr_alt": "Kode QR",
        "expiry": "Bayar sebelum",
        "network": "Simulator tidak dapat dihubungi.",
        "pending_outcome": "Pending: terima nomor VA atau kode bayar",
        "settlement_outcome": "Langsung dibayar",
        "capture_outcome": "Kartu disetujui",
        "challenge_outcome": "Kartu ditahan untuk pemeriksaan",
        "deny_outcome": "Ditolak",
        "expire_outcome": "Kedaluwarsa",
        "failure_outcome": "Gagal",
    },
}

# Flask autoescapes templates rendered from strings, so every value below is HTML-escaped.
_POPUP = """<!doctype html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Midtrans Snap simulator</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{{ url_for('.asset', filename='popup.css') }}">
<script src="{{ url_for('.asset', filename='popup.js') }}" defer></script>
</head>
<body>
<div id="sheet" class="sheet" data-parent-origin="{{ origin }}" data-charge-url="{{ charge_url }}"
 data-labels='{{ t | tojson }}' data-method="{{ txn.payment_method or '' }}"
 {%- if result %} data-result='{{ result | tojson }}'{% endif %}>
<header class="head">
<div>
<p class="merchant">TiketQ</p>
<p class="amount">{{ amount }}</p>
<p class="order">{{ t.order }} {{ txn.order_id }}</p>
</div>
<button type="button" id="close" class="close" aria-label="{{ t.close }}">&times;</button>
</header>
<p class="banner">{{ t.banner }}</p>
{% if problem %}<p class="error" role="alert">{{ problem }}</p>
{% else %}<form id="pay-form" class="body">
<fieldset>
<legend>{{ t.method }}</legend>
{% for method in methods %}<label class="method"><input type="radio" name="method"
 value="{{ method.code }}" data-card="{{ 'true' if method.is_card else 'false' }}"
 {%- if loop.first %} checked{% endif %}> {{ method.label }}</label>
{% endfor %}</fieldset>
<label class="outcome">{{ t.outcome }}
<select name="outcome" id="outcome">
{% for outcome, kind in outcomes %}<option value="{{ outcome }}" data-kind="{{ kind }}">
{{- t[outcome ~ '_outcome'] }}</option>
{% endfor %}</select></label>
<p id="error" class="error" role="alert" hidden></p>
<button type="submit" id="pay-button" class="primary">{{ t.pay }}</button>
</form>
<section id="result" class="body" hidden>
<h2 id="result-title" tabindex="-1"></h2>
<dl id="result-details"></dl>
<button type="button" id="settle" hidden>{{ t.settle }}</button>
<button type="button" id="done" class="primary">{{ t.done }}</button>
</section>
{% endif %}</div>
</body>
</html>
"""


@bp.get("/snap.js")
def script() -> Response:
    """Serve the stand-in for Midtrans's snap.js."""
    return send_from_directory(_STATIC, "snap.js", mimetype="text/javascript", max_age=0)


@bp.get("/assets/<path:filename>")
def asset(filename: str) -> Response:
    """Serve the popup's script and stylesheet."""
    return send_from_directory(_STATIC, filename, max_age=0)


@bp.get("/popup/<token>")
def popup(token: str) -> ResponseReturnValue:
    """Show the payment popup that snap.pay opens in a frame over the merchant page."""
    simulator = current_simulator()
    txn = simulator.store.get(token, by="token")
    if txn is None:
        return "Snap token not found", 404
    origin = request.args.get("origin", "")
    if not _ORIGIN.fullmatch(origin):
        return "origin must be the merchant page's origin, e.g. https://shop.example", 400
    lang = "en" if request.args.get("language") == "en" else "id"
    problem = _client_key_problem(request.args.get("client_key", ""), simulator)
    payable = txn.snap_canceled_at is None and txn.transaction_status in (None, "pending")
    if problem is None and not (payable and utc_now() < txn.page_expiry_time):
        problem = "This Snap token can no longer be paid."
    return render_template_string(
        _POPUP,
        lang=lang,
        t=_TEXTS[lang],
        txn=txn,
        origin=origin,
        amount="Rp " + f"{txn.gross_amount:,}".replace(",", "."),
        charge_url=url_for(".charge", token=token),
        methods=offered_methods(txn.request),
        outcomes=[(o, "card") for o in CARD_OUTCOMES] + [(o, "other") for o in OTHER_OUTCOMES],
        # Reopened after a pending payment, it shows the instructions again, as Snap does.
        result=snap_result(simulator, txn) if txn.transaction_status == "pending" else None,
        problem=problem,
    )


@bp.post("/v2/transactions/<token>/charge")
def charge(token: str) -> Response:
    """Pay a Snap token with a method and a simulated outcome; answer with Snap's result."""
    simulator = current_simulator()
    txn = simulator.store.get(token, by="token")
    if txn is None:
        return _error("404", "token not found", 404)
    if utc_now() >= txn.page_expiry_time:
        return _error("407", "Snap token is expired", 410)
    params = request.get_json(silent=True)
    if not isinstance(params, dict):
        return _error("400", "body must be a JSON object with method and outcome", 400)
    try:
        updated = simulator.pay(
            token, str(params.get("method")), str(params.get("outcome")), by="token"
        )
    except UnknownChoice as exc:
        return _error("400", str(exc), 400)
    except lifecycle.IllegalMove as exc:
        return _error("406", str(exc), 409)
    if updated is None:
        return _error("404", "token not found", 404)
    return json_response(snap_result(simulator, updated.transaction))


def snap_result(simulator: Simulator, txn: Transaction) -> dict[str, Any]:
    """The result object snap.js hands to onSuccess, onPending or onError for `txn`."""
    result = simulator.status_body(txn)
    # A browser is no place for a signature made with the server key.
    del result["signature_key"]
    result["status_message"] = _RESULT_MESSAGES.get(
        result["status_code"], "Transaction is not successful"
    )
    finish = _return_url(txn)
    if finish is not None:
        result["finish_redirect_url"] = finish
    return result


def _client_key_problem(client_key: str, simulator: Simulator) -> str | None:
    if not client_key:
        return "snap.js needs data-client-key: the Midtrans client key."
    if client_key == simulator.server_key or "-server-" in client_key:
        return "data-client-key holds a server key: the server key must never reach a browser."
    return None


def _error(code: str, message: str, status: int) -> Response:
    # Snap's error results carry status_message as a list, unlike its other results.
    return json_response({"status_code": code, "status_message": [message]}, status)
