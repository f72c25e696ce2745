"""Notifications with real commits: failures half-way, and concurrent deliveries for one payment."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from tests.midtrans import notification
from tiketq.extensions import db
from tiketq.payments import notifications
from tiketq.payments.models import Notification, OutboxMessage, Payment


def open_payment(app, amount: int = 150_000) -> Payment:
    order_id = f"ORD-{uuid.uuid4().hex[:12].upper()}"
    created = app.test_client().post("/payments", json={"order_id": order_id, "amount": amount})
    assert created.status_code == 201
    with app.app_context():
        return db.session.get(Payment, uuid.UUID(created.get_json()["id"]))


def state(app, payment: Payment) -> tuple[str, list[str], list[str]]:
    with app.app_context():
        current = db.session.get(Payment, payment.id)
        messages = db.session.scalars(
            sa.select(OutboxMessage.event_type).where(OutboxMessage.payment_id == payment.id)
        ).all()
        outcomes = db.session.scalars(
            sa.select(Notification.outcome)
            .where(Notification.order_id == payment.gateway_order_id)
            .order_by(Notification.id)
        ).all()
        return current.status, sorted(messages), list(outcomes)


def post(app, body) -> int:
    return app.test_client().post("/payments/webhook", json=body).status_code


def test_a_failure_while_applying_is_503_and_a_retry_applies_it_cleanly(
    committing_app, monkeypatch
):
    payment = open_payment(committing_app)

    def database_gone(*args, **kwargs):
        raise OperationalError("INSERT INTO outbox", {}, Exception("server closed the connection"))

    monkeypatch.setattr(notifications, "announce", database_gone)
    body = notification(payment.gateway_order_id, "settlement")
    assert post(committing_app, body) == 503
    assert state(committing_app, payment) == ("pending", [], ["received"])

    monkeypatch.undo()
    assert post(committing_app, body) == 200
    assert state(committing_app, payment) == (
        "success",
        ["payment.succeeded"],
        ["received", "applied"],
    )


def deliver_together(app, bodies: list[dict]) -> list[int]:
    """POST the bodies from one thread each, released at the same instant."""
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def deliver(body: dict) -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post("/payments/webhook", json=body).status_code)

    threads = [threading.Thread(target=deliver, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


@pytest.mark.parametrize(
    ("first", "second"),
    [("settlement", "settlement"), ("settlement", "expire"), ("pending", "settlement")],
)
def test_concurrent_notifications_for_one_payment_end_consistently(committing_app, first, second):
    for _ in range(15):
        payment = open_payment(committing_app)
        statuses = deliver_together(
            committing_app,
            [notification(payment.gateway_order_id, s) for s in (first, second)],
        )

        assert statuses == [200, 200]
        final, messages, outcomes = state(committing_app, payment)
        assert messages.count("payment.succeeded") <= 1
        if "settlement" in (first, second) and "expire" not in (first, second):
            assert (final, messages) == ("success", ["payment.succeeded"])
        else:
            # Whichever came first wins; the other is flagged or ignored, never both applied.
            assert final in {"success", "expired"}
            assert len(messages) == 1
        assert "received" not in outcomes
