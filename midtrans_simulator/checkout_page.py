"""The hand-usable stand-in for the Snap payment page behind `redirect_url`."""

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import render_template_string

from .lifecycle import OUTCOMES, status_code
from .methods import offered_methods
from .store import Transaction
from .wire import midtrans_time, utc_now

# Flask autoescapes templates rendered from strings, so every value below is HTML-escaped.
_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Midtrans simulator · {{ txn.order_id }}</title>
<link rel="icon" href="data:,">
<style>
body { font-family: system-ui, sans-serif; color: #1f2937;
       max-width: 36rem; margin: 2rem auto; padding: 0 1rem; }
.banner { background: #fef3c7; padding: .5rem .75rem; border-radius: .375rem; }
.error { background: #fee2e2; padding: .5rem .75rem; border-radius: .375rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; }
form { display: grid; gap: .75rem; margin-top: 1rem; }
button { padding: .5rem; font-size: 1rem; }
</style>
</head>
<body>
<p class="banner">Midtrans sandbox simulator: no real money moves.</p>
<h1>Payment for {{ txn.order_id }}</h1>
<dl>
<dt>Order ID</dt><dd>{{ txn.order_id }}</dd>
<dt>Amount</dt><dd>{{ amount }}</dd>
<dt>Status</dt><dd>{{ status }}</dd>
{% for label, value in details %}<dt>{{ label }}</dt><dd>{{ value }}</dd>
{% endfor %}</dl>
{% if items %}<h2>Items</h2>
<ul>{% for item in items %}<li>{{ item.name }} × {{ item.quantity }}</li>{% endfor %}</ul>
{% endif %}
{% if message %}<p class="error" role="alert">{{ message }}</p>{% endif %}
{% if methods %}<form method="post">
<label>Payment method
<select name="method" required>{% for method in methods %}
<option value="{{ method.code }}"
{%- if method.code == txn.payment_method %} selected{% endif %}>
{{- method.label }}</option>{% endfor %}
</select></label>
<label>Outcome
<select name="outcome" required>{% for outcome in outcomes %}
<option value="{{ outcome }}">{{ outcome }}</option>{% endfor %}
</select></label>
<button type="submit">Pay</button>
</form>{% endif %}
{% if return_url %}<p><a href="{{ return_url }}">Return to merchant</a></p>{% endif %}
</body>
</html>
"""


def render_checkout(txn: Transaction, *, message: str | None = None) -> str:
    """Render the payment page for `txn`, with an optional error message."""
    payable = txn.snap_canceled_at is None and txn.transaction_status in (None, "pending")
    page_open = utc_now() < txn.page_expiry_time
    return render_template_string(
        _TEMPLATE,
        txn=txn,
        amount=_rupiah(txn.gross_amount),
        status=_status_text(txn, page_open),
        details=_payment_details(txn),
        items=[item for item in txn.request.get("item_details") or [] if isinstance(item, dict)],
        message=message,
        methods=offered_methods(txn.request) if payable and page_open else [],
        outcomes=OUTCOMES,
        return_url=_return_url(txn),
    )


def _rupiah(amount: int) -> str:
    return "Rp " + f"{amount:,}".replace(",", ".")


def _status_text(txn: Transaction, page_open: bool) -> str:
    if txn.snap_canceled_at is not None and txn.transaction_status is None:
        return "payment page canceled"
    if txn.transaction_status is None:
        return "waiting for a payment method" if page_open else "payment page expired"
    return f"{txn.transaction_status} (status_code {status_code(txn)})"


def _payment_details(txn: Transaction) -> list[tuple[str, str]]:
    """Flatten the method fields into label/value rows the traveller needs to pay."""
    rows: list[tuple[str, str]] = []
    if txn.payment_type is not None:
        rows.append(("Payment type", txn.payment_type))
    for name, value in txn.method_fields.items():
        if name == "va_numbers":
            rows.extend(
                (f"{entry['bank'].upper()} VA number", entry["va_number"]) for entry in value
            )
        else:
            rows.append((name.replace("_", " ").capitalize(), str(value)))
    if txn.transaction_status == "pending":
        rows.append(("Pay before", midtrans_time(txn.expiry_time) + " WIB"))
    return rows


def _return_url(txn: Transaction) -> str | None:
    """Build the merchant's Finish/Error URL with the query Snap appends, once there is a result."""
    if txn.transaction_status is None:
        return None
    callbacks: Any = txn.request.get("callbacks")
    if not isinstance(callbacks, dict):
        return None
    failed = txn.transaction_status in ("deny", "failure")
    target = (
        callbacks.get("error") if failed and callbacks.get("error") else callbacks.get("finish")
    )
    if not isinstance(target, str):
        return None
    parts = urlsplit(target)
    # Only http(s) links: escaping alone would not stop a javascript: URL.
    if parts.scheme not in ("http", "https"):
        return None
    query = parse_qsl(parts.query) + [
        ("order_id", txn.order_id),
        ("status_code", status_code(txn)),
        ("transaction_status", txn.transaction_status),
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))
