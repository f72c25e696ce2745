"""The JSON API under /payments as callers use it: the transaction service's body, reading back."""

from __future__ import annotations

import uuid

from tiketq.extensions import db
from tiketq.payments.models import Payment


def transaction_service_payload(order_id: str, total: float = 1_275_000.0) -> dict:
    """The body the transaction service really sends: floats, one email, repeated ids."""
    return {
        "order_id": order_id,
        "amount": total,
        "payment_method": "bank_transfer",
        "customer_details": {"email": "sari@example.co.id"},
        "item_details": [
            {
                "id": order_id,
                "price": 1_200_000.0,
                "quantity": 1,
                "name": "CGK - DPS Garuda GA-404",
            },
            {"id": order_id, "price": 50_000.0, "quantity": 2, "name": "Baggage 20 kg"},
            {
                "id": order_id,
                "price": total - 1_300_000.0,
                "quantity": 1,
                "name": "Tax and discount",
            },
        ],
        "description": f"Payment for order {order_id}",
    }


def create(client, body, **headers):
    """Post `body` to /payments through a test client, with these headers."""
    return client.post("/payments", json=body, headers=headers)


def stored(payment_id: str) -> Payment:
    """The stored payment with this id."""
    return db.session.get(Payment, uuid.UUID(payment_id))
