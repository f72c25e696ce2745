"""Invariants every payment must keep, checked against the database; read-only."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from tiketq.extensions import db
from tiketq.outbound import TRANSACTION_SERVICE
from tiketq.payments.models import Delivery, OutboxMessage, Payment, PaymentEvent, Refund
from tiketq.payments.status import PAID


@dataclass(frozen=True)
class Violation:
    """One broken invariant on one payment."""

    payment_id: uuid.UUID
    order_id: str
    rule: str
    detail: str


def audit(batch: int = 500) -> Iterator[Violation]:
    """Yield every violation, walking all payments in batches."""
    last: uuid.UUID | None = None
    while True:
        query = sa.select(Payment).order_by(Payment.id).limit(batch)
        if last is not None:
            query = query.where(Payment.id > last)
        payments = list(db.session.scalars(query))
        if not payments:
            return
        for payment in payments:
            yield from _check(payment)
        last = payments[-1].id
        db.session.expunge_all()


def _check(payment: Payment) -> Iterator[Violation]:
    def broken(rule: str, detail: str) -> Violation:
        return Violation(payment.id, payment.order_id, rule, detail)

    events = list(
        db.session.scalars(
            sa.select(PaymentEvent)
            .where(PaymentEvent.payment_id == payment.id)
            .order_by(PaymentEvent.id)
        )
    )
    if not events:
        yield broken("history", "no events at all")
    else:
        if events[-1].to_status != payment.status:
            yield broken(
                "history", f"status {payment.status} but last event says {events[-1].to_status}"
            )
        for before, after in zip(events, events[1:], strict=False):
            if after.from_status != before.to_status:
                yield broken(
                    "history",
                    f"event {after.id} starts at {after.from_status}, not {before.to_status}",
                )

    refunded = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment.id, Refund.status == "succeeded"
        )
    )
    if max(refunded, payment.refunded_amount) > payment.amount:
        yield broken(
            "refunds", f"{max(refunded, payment.refunded_amount)} refunded of {payment.amount}"
        )

    if payment.status in PAID and payment.paid_at is None:
        yield broken("paid_at", f"{payment.status} without paid_at")

    if payment.status in PAID:
        yield from _check_confirmation(payment, broken)


def _check_confirmation(
    payment: Payment, broken: Callable[[str, str], Violation]
) -> Iterator[Violation]:
    message = db.session.scalar(
        sa.select(OutboxMessage).where(
            OutboxMessage.payment_id == payment.id, OutboxMessage.event_type == "payment.succeeded"
        )
    )
    if message is None:
        yield broken("confirmation", "paid but no payment.succeeded message queued")
        return
    dead = db.session.scalar(
        sa.select(sa.func.count()).where(
            Delivery.message_id == message.id,
            Delivery.destination == TRANSACTION_SERVICE,
            Delivery.status == "dead",
        )
    )
    if dead:
        yield broken("confirmation", "the transaction service's confirmation is dead-lettered")
