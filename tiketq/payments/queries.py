"""Read-only selects for views."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from tiketq.extensions import db
from tiketq.payments.errors import PaymentNotFound
from tiketq.payments.models import Payment
from tiketq.payments.status import OPEN, PAID

# The service we replace named payments "payment-<order_id>"; callers may still hold such ids.
LEGACY_ID_PREFIX = "payment-"


def get_payment(reference: str) -> Payment:
    """The payment with this id, or the latest attempt of a legacy "payment-<order_id>" id."""
    try:
        payment = db.session.get(Payment, uuid.UUID(reference))
    except ValueError:
        payment = None
        if reference.startswith(LEGACY_ID_PREFIX):
            payment = latest_for_order(reference[len(LEGACY_ID_PREFIX) :])
    if payment is None:
        raise PaymentNotFound("Payment not found")
    return payment


def latest_for_order(order_id: str) -> Payment | None:
    """The newest attempt for an order, if any."""
    return db.session.scalar(
        sa.select(Payment)
        .where(Payment.order_id == order_id)
        .order_by(Payment.attempt.desc())
        .limit(1)
    )


def payments_for_order(order_id: str) -> list[Payment]:
    """Every attempt for an order, newest first."""
    return list(
        db.session.scalars(
            sa.select(Payment).where(Payment.order_id == order_id).order_by(Payment.attempt.desc())
        )
    )


def counted_attempt(order_id: str, *, lock: bool = False) -> Payment | None:
    """The order's attempt that is open or paid (at most one exists), optionally row-locked."""
    query = sa.select(Payment).where(
        Payment.order_id == order_id, Payment.status.in_(sorted(OPEN | PAID))
    )
    if lock:
        query = query.with_for_update()
    return db.session.scalar(query)
