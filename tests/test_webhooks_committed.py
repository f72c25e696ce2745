"""Notifications with real commits: failures half-way, locks held elsewhere, concurrent workers."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from tests.support.config import TEST_DATABASE_URL
from tests.support.payments import open_payment
from tiketq import worker
from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.payments import notifications
from tiketq.payments.models import Notification, OutboxMessage, Payment

# Every test commits for real, the tables truncated after it.
pytestmark = pytest.mark.slow

# Generous for a busy 2-core machine: a request or a worker round takes well under a second.
JOIN_SECONDS = 30


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


def apply_inbox(app) -> dict[str, int]:
    """The worker's inbox job, as a wake-up runs it (a lost database ends the job, not the loop)."""
    with app.app_context():
        try:
            return worker.apply_inbox(current_gateway())
        finally:
            db.session.remove()


def transition(simulator, payment: Payment, transaction_status: str) -> None:
    simulator.control(
        "POST",
        f"/transactions/{payment.gateway_order_id}/transition",
        {"transaction_status": transaction_status},
    ).raise_for_status()


def test_a_database_failure_while_applying_leaves_nothing_half_done_and_a_retry_applies_it(
    committing_app, midtrans_simulator, monkeypatch
):
    payment = open_payment(committing_app)
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "settlement")

    def database_gone(*args, **kwargs):
        raise OperationalError("INSERT INTO outbox", {}, Exception("server closed the connection"))

    # The door stores and answers: applying is the worker's, and fails there.
    assert post(committing_app, midtrans_simulator.notification(payment.gateway_order_id)) == 200
    monkeypatch.setattr(notifications, "announce", database_gone)
    assert apply_inbox(committing_app) == {"applied": 0}
    assert state(committing_app, payment) == ("pending", [], ["received"])

    monkeypatch.undo()
    assert apply_inbox(committing_app) == {"applied": 1}
    assert state(committing_app, payment) == ("success", ["payment.succeeded"], ["applied"])


def test_a_row_that_raises_is_failed_then_applied_cleanly_by_its_retry(
    committing_app, midtrans_simulator, monkeypatch
):
    payment = open_payment(committing_app)
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "settlement")
    assert post(committing_app, midtrans_simulator.notification(payment.gateway_order_id)) == 200

    def half_way(*args, **kwargs):
        raise RuntimeError("raised after the transition")

    monkeypatch.setattr(notifications, "announce", half_way)
    apply_inbox(committing_app)
    assert state(committing_app, payment) == ("pending", [], ["failed"])

    monkeypatch.undo()
    with committing_app.app_context():
        row = db.session.scalar(
            sa.select(Notification).where(Notification.order_id == payment.gateway_order_id)
        )
        later = row.next_attempt_at
        assert notifications.apply_waiting(current_gateway(), now=later) == 1
    assert state(committing_app, payment) == ("success", ["payment.succeeded"], ["applied"])


def test_the_notification_url_answers_while_the_payment_is_locked(
    committing_app, midtrans_simulator
):
    payment = open_payment(committing_app)
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "settlement")
    body = midtrans_simulator.notification(payment.gateway_order_id)
    statuses: list[int] = []
    request = threading.Thread(target=lambda: statuses.append(post(committing_app, body)))

    other = sa.create_engine(TEST_DATABASE_URL, poolclass=sa.pool.NullPool)
    try:
        with other.connect() as holder:
            holder.execute(
                sa.text("SELECT id FROM payment.payments WHERE id = :id FOR UPDATE"),
                {"id": payment.id},
            )
            # The lock is held until this connection's transaction ends, after the request.
            request.start()
            request.join(JOIN_SECONDS)
            answered_while_locked = not request.is_alive()
            holder.rollback()
        request.join(JOIN_SECONDS)
    finally:
        other.dispose()

    assert answered_while_locked, "the notification URL waited for the payment's row lock"
    assert statuses == [200]
    assert state(committing_app, payment) == ("pending", [], ["received"])


def test_two_workers_racing_on_one_order_apply_it_once(committed, midtrans_simulator):
    first, second = committed(), committed()
    payment = open_payment(first)
    order = payment.gateway_order_id
    midtrans_simulator.pay(order, "bca_va", "settlement")
    body = midtrans_simulator.notification(order)
    for _ in range(3):
        assert post(first, body) == 200
    # A slow status answer keeps the first worker inside the order while the second arrives.
    midtrans_simulator.fault(delay_seconds=1, operations=["core.status"])
    midtrans_simulator.reset_calls()

    barrier = threading.Barrier(2)
    handled: list[int] = []
    errors: list[BaseException] = []

    def race(app) -> None:
        try:
            with app.app_context():
                barrier.wait(JOIN_SECONDS)
                handled.append(notifications.apply_waiting(current_gateway()))
                db.session.remove()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(app,)) for app in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    assert not any(thread.is_alive() for thread in threads) and errors == []

    assert sorted(handled) == [0, 3]
    assert midtrans_simulator.calls("core.status", order) == 1
    final, messages, outcomes = state(first, payment)
    assert (final, messages) == ("success", ["payment.succeeded"])
    assert sorted(outcomes) == ["applied", "duplicate", "duplicate"]


def deliver_together(app, bodies: list[dict]) -> list[int]:
    """POST the bodies from one thread each, released at the same instant."""
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def deliver(body: dict) -> None:
        client = app.test_client()
        barrier.wait(JOIN_SECONDS)
        statuses.append(client.post("/payments/webhook", json=body).status_code)

    threads = [threading.Thread(target=deliver, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    return statuses


def apply_together(apps: list) -> None:
    """Run the inbox job in one app per thread, released at the same instant."""
    barrier = threading.Barrier(len(apps))

    def run(app) -> None:
        with app.app_context():
            barrier.wait(JOIN_SECONDS)
            notifications.apply_waiting(current_gateway())
            db.session.remove()

    threads = [threading.Thread(target=run, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)


@pytest.mark.parametrize(
    ("first", "then", "expected"),
    [
        # A redelivery of the settlement; a stale pending beside the settlement; an expiry.
        ("settlement", "settlement", ("success", ["payment.succeeded"])),
        ("pending", "settlement", ("success", ["payment.succeeded"])),
        ("pending", "expire", ("expired", ["payment.expired"])),
    ],
)
def test_concurrent_notifications_for_one_payment_end_consistently(
    committed, midtrans_simulator, first, then, expected
):
    apps = [committed(), committed()]
    for _ in range(8):
        payment = open_payment(apps[0])
        midtrans_simulator.pay(
            payment.gateway_order_id, "bca_va", "pending" if first == "pending" else first
        )
        bodies = [midtrans_simulator.notification(payment.gateway_order_id)]
        if then != first:
            transition(midtrans_simulator, payment, then)
        bodies.append(midtrans_simulator.notification(payment.gateway_order_id))

        assert deliver_together(apps[0], bodies) == [200, 200]
        apply_together(apps)

        final, messages, outcomes = state(apps[0], payment)
        # Midtrans's answer is applied once whoever stored or applied first: one announcement.
        assert (final, messages) == expected
        assert "received" not in outcomes and outcomes.count("applied") == 1
