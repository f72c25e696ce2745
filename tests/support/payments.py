"""Helpers for tests that open payments with real commits, and break one on purpose."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask

from tiketq.extensions import db
from tiketq.payments.models import Payment

# A well-formed payment id that no test ever issues; fixed, so that parallel workers collect the
# same test ids.
NEVER_ISSUED_ID = "00000000-0000-4000-8000-000000000000"


def open_payment(app: Flask, amount: int = 150_000) -> Payment:
    """Open a payment through the API of `app`; returns it detached from any session."""
    order_id = f"ORD-{uuid.uuid4().hex[:12].upper()}"
    created = app.test_client().post("/payments", json={"order_id": order_id, "amount": amount})
    assert created.status_code == 201
    with app.app_context():
        return db.session.get(Payment, uuid.UUID(created.get_json()["id"]))


def poison(monkeypatch: Any, module: Any, name: str, bad: Payment) -> None:
    """Make `module.name(payment, ...)` raise for the payment `bad` only."""
    real = getattr(module, name)

    def poisoned(target: Payment, *args: Any, **kwargs: Any) -> Any:
        if target.id == bad.id:
            raise ValueError("poison")
        return real(target, *args, **kwargs)

    monkeypatch.setattr(module, name, poisoned)
