"""Midtrans-shaped notifications for tests, signed as Midtrans signs them."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from tests.support.config import SERVER_KEY

STATUS_CODES = {
    "pending": "201",
    "settlement": "200",
    "capture": "200",
    "refund": "200",
    "partial_refund": "200",
    "deny": "202",
    "cancel": "202",
    "expire": "202",
    "failure": "202",
}


def sign(order_id: str, status_code: str, gross_amount: str, key: str = SERVER_KEY) -> str:
    """The signature_key Midtrans computes."""
    return hashlib.sha512((order_id + status_code + gross_amount + key).encode()).hexdigest()


def notification(
    order_id: str, transaction_status: str, gross_amount: str = "150000.00", **fields: Any
) -> dict[str, Any]:
    """A signed bank-transfer notification; `fields` add or replace Midtrans fields."""
    body: dict[str, Any] = {
        "transaction_time": "2026-11-26 14:00:00",
        "transaction_status": transaction_status,
        "transaction_id": str(uuid.uuid5(uuid.NAMESPACE_URL, order_id)),
        "status_message": "midtrans payment notification",
        "status_code": STATUS_CODES[transaction_status],
        "payment_type": "bank_transfer",
        "order_id": order_id,
        "merchant_id": "G141532850",
        "gross_amount": gross_amount,
        "currency": "IDR",
        "va_numbers": [{"bank": "bca", "va_number": "12345678901"}],
        "expiry_time": "2026-11-26 15:00:00",
        **fields,
    }
    if transaction_status == "settlement" and "settlement_time" not in fields:
        body["settlement_time"] = "2026-11-26 14:05:00"
    body["signature_key"] = sign(body["order_id"], body["status_code"], body["gross_amount"])
    return body


def deliver(client: Any, simulator: Any, order_id: str, path: str = "/payments/webhook") -> Any:
    """Send the notification Midtrans would send now about the order, as Midtrans sends it."""
    return client.post(path, json=simulator.notification(order_id))


def apply_inbox() -> int:
    """Run the worker's inbox job once, as a worker woken by a stored notification does."""
    # Imported here: this module is also used by tests that build no app.
    from tiketq.gateway import current_gateway
    from tiketq.payments import notifications

    return notifications.apply_waiting(current_gateway())


def settle(
    client: Any,
    simulator: Any,
    order_id: str,
    method: str = "bca_va",
    outcome: str = "settlement",
) -> None:
    """Pay an order at the simulator, deliver its notification and let the worker apply it."""
    simulator.pay(order_id, method, outcome)
    deliver(client, simulator, order_id)
    apply_inbox()


def move(
    client: Any, simulator: Any, order_id: str, transaction_status: str, **params: Any
) -> None:
    """Move a transaction at the simulator (refund, chargeback...), deliver and apply the news."""
    response = simulator.control(
        "POST",
        f"/transactions/{order_id}/transition",
        {"transaction_status": transaction_status, **params},
    )
    response.raise_for_status()
    deliver(client, simulator, order_id)
    apply_inbox()
