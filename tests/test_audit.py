"""The audit command finds broken invariants and is quiet about healthy payments."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.midtrans import settle
from tiketq.extensions import db
from tiketq.payments.audit import audit
from tiketq.payments.models import Delivery, OutboxMessage, Payment, PaymentEvent, utcnow


@pytest.fixture
def paid(client, midtrans_simulator, order_id) -> Payment:
    created = client.post("/payments", json={"order_id": order_id, "amount": 150_000}).get_json()
    settle(client, midtrans_simulator, created["gateway_order_id"])
    return db.session.get(Payment, uuid.UUID(created["id"]))


def rules(payment: Payment) -> list[str]:
    return [v.rule for v in audit() if v.payment_id == payment.id]


def test_healthy_payments_pass(client, paid, order_id):
    client.post("/payments", json={"order_id": order_id + "P", "amount": 10_000})
    assert list(audit()) == []


def test_a_status_its_history_cannot_explain_is_reported(paid):
    paid.status = "pending"
    db.session.commit()
    assert rules(paid) == ["history"]


def test_a_broken_event_chain_is_reported(paid):
    db.session.add(
        PaymentEvent(payment_id=paid.id, from_status="failed", to_status="success", source="test")
    )
    db.session.commit()
    assert "history" in rules(paid)


def test_a_success_without_a_queued_confirmation_is_reported(paid):
    db.session.execute(sa.delete(OutboxMessage).where(OutboxMessage.payment_id == paid.id))
    db.session.commit()
    assert rules(paid) == ["confirmation"]


def test_a_dead_lettered_confirmation_is_reported(paid):
    message = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.payment_id == paid.id))
    message.dispatched_at = utcnow()
    message.deliveries.append(
        Delivery(
            destination="transaction_service", url="http://ts/confirm", status="dead", attempts=11
        )
    )
    db.session.commit()
    assert rules(paid) == ["confirmation"]


def test_a_paid_payment_without_paid_at_is_reported(paid):
    paid.paid_at = None
    db.session.commit()
    assert rules(paid) == ["paid_at"]


def test_the_command_exits_1_and_lists_violations(app, paid):
    paid.paid_at = None
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["payments", "audit"])
    assert result.exit_code == 1
    assert "paid_at" in result.output and "1 violation(s)" in result.output
