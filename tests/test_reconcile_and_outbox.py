"""The worker's jobs with real commits: reconcile, expiry, delivery, several workers at once."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import timedelta

import jwt
import pytest
import sqlalchemy as sa

from tests.support.config import CONFIRMATION_SECRET
from tests.support.midtrans import notification
from tests.support.payments import open_payment
from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.outbound import current_outbound
from tiketq.payments import notifications, outbox, reconcile
from tiketq.payments.models import Delivery, Notification, Payment, utcnow
from tiketq.payments.schedule import DELIVERY_DELAYS, MAX_DELIVERY_ATTEMPTS
from tiketq.worker import run_once

# Every test runs the worker's jobs on real commits, the tables truncated after it.
pytestmark = pytest.mark.slow

AMOUNT = 150_000


def load(app, payment: Payment) -> Payment:
    with app.app_context():
        loaded = db.session.get(Payment, payment.id)
        db.session.expunge(loaded)
        return loaded


def make_due(app, payment: Payment) -> None:
    with app.app_context():
        db.session.execute(
            sa.update(Payment)
            .where(Payment.id == payment.id)
            .values(next_check_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()


def notify(app, simulator, payment: Payment) -> None:
    """Post the notification Midtrans would send now about the payment; the worker applies it."""
    body = simulator.notification(payment.gateway_order_id)
    assert app.test_client().post("/payments/webhook", json=body).status_code == 200


def apply_inbox(app) -> int:
    with app.app_context():
        return notifications.apply_waiting(current_gateway())


def settle_by_notification(app, simulator, payment: Payment) -> None:
    """Paid at Midtrans, notified, and applied by the worker's inbox job."""
    simulator.pay(payment.gateway_order_id, "bca_va", "settlement")
    notify(app, simulator, payment)
    assert apply_inbox(app) == 1


def in_threads(app, job, count: int = 2) -> list:
    barrier = threading.Barrier(count)
    results: list = []

    def run():
        with app.app_context():
            barrier.wait()
            results.append(job())
            db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_missing_notification_is_healed_by_reconciliation(
    worker_app, midtrans_simulator, receiver
):
    payment = open_payment(worker_app)
    midtrans_simulator.pay(payment.gateway_order_id, "gopay", "settlement")
    make_due(worker_app, payment)

    with worker_app.app_context():
        assert run_once(current_gateway(), current_outbound())["reconciled"] == 1

    healed = load(worker_app, payment)
    assert (healed.status, healed.payment_type, healed.checks) == ("success", "gopay", 1)
    assert healed.next_check_at is None


def test_a_payment_nobody_chose_a_method_for_stays_pending_and_is_checked_later(worker_app):
    payment = open_payment(worker_app)
    make_due(worker_app, payment)
    with worker_app.app_context():
        reconcile.reconcile_due(current_gateway())
    checked = load(worker_app, payment)
    assert (checked.status, checked.checks) == ("pending", 1)
    assert checked.next_check_at > utcnow()


def test_two_workers_reconcile_each_payment_once(worker_app, midtrans_simulator):
    payments = [open_payment(worker_app) for _ in range(12)]
    for payment in payments:
        midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "pending")
        make_due(worker_app, payment)

    results = in_threads(worker_app, lambda: reconcile.reconcile_due(current_gateway()))

    assert sum(results) == 12
    assert [load(worker_app, p).checks for p in payments] == [1] * 12


def test_two_workers_deliver_each_message_once(worker_app, receiver, midtrans_simulator):
    payments = [open_payment(worker_app) for _ in range(10)]
    for payment in payments:
        settle_by_notification(worker_app, midtrans_simulator, payment)
    with worker_app.app_context():
        outbox.dispatch_outbox(current_outbound())

    in_threads(worker_app, lambda: outbox.deliver_due(current_outbound(), limit=100))

    confirmations = [r for r in receiver.received if r.path.endswith("/confirm")]
    events = [r for r in receiver.received if r.path.endswith("/payment-events")]
    assert sorted(r.path for r in confirmations) == sorted(
        f"/transactions/payments/{p.order_id}/confirm" for p in payments
    )
    assert Counter(r.headers["X-Tiketq-Event-Id"] for r in events).most_common(1)[0][1] == 1
    assert len(events) == 10


def test_the_confirmation_keeps_the_transaction_service_contract(
    worker_app, receiver, midtrans_simulator
):
    payment = open_payment(worker_app)
    settle_by_notification(worker_app, midtrans_simulator, payment)
    with worker_app.app_context():
        run_once(current_gateway(), current_outbound())

    [confirmation] = [r for r in receiver.received if r.path.endswith("/confirm")]
    body = confirmation.json()
    claims = jwt.decode(body["token"], CONFIRMATION_SECRET, algorithms=["HS256"])
    assert claims["token"] == "success" and claims["order_id"] == payment.order_id
    assert claims["exp"] - claims["iat"] <= 300 and claims["jti"]
    assert body["gateway_response"]["success"] is True
    assert body["gateway_response"]["amount"] == AMOUNT


def test_subscriber_events_are_signed_over_timestamp_and_body(
    worker_app, receiver, midtrans_simulator
):
    import hashlib
    import hmac

    payment = open_payment(worker_app)
    settle_by_notification(worker_app, midtrans_simulator, payment)
    with worker_app.app_context():
        run_once(current_gateway(), current_outbound())

    [event] = [r for r in receiver.received if r.path.endswith("/payment-events")]
    signed = f"{event.headers['X-Tiketq-Timestamp']}.".encode() + event.body
    expected = hmac.new(b"subscriber-secret", signed, hashlib.sha256).hexdigest()
    assert event.headers["X-Tiketq-Signature"] == "v1=" + expected
    assert event.json()["event_type"] == "payment.succeeded"
    assert event.json()["event_id"] == event.headers["X-Tiketq-Event-Id"]


def test_failures_are_retried_with_growing_delays_then_dead_lettered(
    worker_app, receiver, midtrans_simulator
):
    payment = open_payment(worker_app)
    settle_by_notification(worker_app, midtrans_simulator, payment)
    receiver.script = [503] * 100
    now = utcnow()
    with worker_app.app_context():
        outbox.dispatch_outbox(current_outbound(), now=now)
        gaps = []
        for _ in range(MAX_DELIVERY_ATTEMPTS):
            outbox.deliver_due(current_outbound(), now=now, clock=lambda at=now: at)
            delivery = db.session.scalar(
                sa.select(Delivery).where(Delivery.destination == "transaction_service")
            )
            if delivery.status == "dead":
                break
            gaps.append(delivery.next_attempt_at - now)
            now = delivery.next_attempt_at
            db.session.expire_all()

    assert delivery.status == "dead" and delivery.attempts == MAX_DELIVERY_ATTEMPTS
    assert delivery.last_status_code == 503
    assert gaps == sorted(gaps[:-1]) + gaps[-1:] and gaps[0] < gaps[-1]
    assert sum(DELIVERY_DELAYS, timedelta()) >= timedelta(hours=20)
    ids = {
        r.headers.get("X-Tiketq-Event-Id") for r in receiver.received if "/payment-events" in r.path
    }
    assert len(ids) == 1, "every retry carries the same event id"


def test_a_dead_letter_can_be_resent(worker_app, receiver, midtrans_simulator):
    payment = open_payment(worker_app)
    settle_by_notification(worker_app, midtrans_simulator, payment)
    with worker_app.app_context():
        outbox.dispatch_outbox(current_outbound())
        delivery = db.session.scalar(
            sa.select(Delivery).where(Delivery.destination == "transaction_service")
        )
        delivery.status = "dead"
        delivery_id = delivery.id
        db.session.commit()
    runner = worker_app.test_cli_runner()
    assert "queued" in runner.invoke(args=["payments", "resend", str(delivery_id)]).output
    with worker_app.app_context():
        outbox.deliver_due(current_outbound())
        assert db.session.get(Delivery, delivery_id).status == "delivered"


def test_a_404_from_the_transaction_service_is_retried(worker_app, receiver, midtrans_simulator):
    payment = open_payment(worker_app)
    settle_by_notification(worker_app, midtrans_simulator, payment)
    receiver.script = [404]
    with worker_app.app_context():
        outbox.dispatch_outbox(current_outbound())
        outbox.deliver_due(current_outbound())
        delivery = db.session.scalar(
            sa.select(Delivery).where(Delivery.destination == "transaction_service")
        )
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            "pending",
            1,
            404,
        )


def test_a_crash_mid_delivery_is_redelivered_with_the_same_event_id(
    worker_app, receiver, midtrans_simulator, monkeypatch
):
    payment = open_payment(worker_app)
    settle_by_notification(worker_app, midtrans_simulator, payment)
    with worker_app.app_context():
        outbound = current_outbound()
        outbox.dispatch_outbox(outbound)
        real_send = outbound.send

        def send_then_die(*args, **kwargs):
            real_send(*args, **kwargs)
            raise SystemExit("worker killed after sending, before recording")

        monkeypatch.setattr(outbound, "send", send_then_die)
        with pytest.raises(SystemExit):
            outbox.deliver_due(outbound)
        db.session.rollback()
        monkeypatch.undo()
        outbox.deliver_due(outbound, limit=10)

    confirmations = [r for r in receiver.received if r.path.endswith("/confirm")]
    assert len(confirmations) == 2
    jtis = {
        jwt.decode(r.json()["token"], CONFIRMATION_SECRET, algorithms=["HS256"])["jti"]
        for r in confirmations
    }
    assert len(jtis) == 1


def test_only_successes_are_confirmed_to_the_transaction_service(
    worker_app, receiver, midtrans_simulator
):
    payment = open_payment(worker_app)
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "pending")
    midtrans_simulator.control(
        "POST",
        f"/transactions/{payment.gateway_order_id}/transition",
        {"transaction_status": "expire"},
    ).raise_for_status()
    notify(worker_app, midtrans_simulator, payment)
    with worker_app.app_context():
        done = run_once(current_gateway(), current_outbound())
    assert (done["applied"], done["dispatched"], done["delivered"]) == (1, 1, 1)
    assert load(worker_app, payment).status == "expired"
    assert [r.path for r in receiver.received] == ["/user-service/payment-events"]
    assert receiver.received[0].json()["event_type"] == "payment.expired"


def test_an_overdue_payment_without_a_transaction_is_expired_and_its_snap_page_closed(
    worker_app, midtrans_simulator
):
    payment = open_payment(worker_app)
    with worker_app.app_context():
        assert (
            reconcile.expire_overdue(
                current_gateway(), now=payment.expires_at + timedelta(seconds=1)
            )
            == 1
        )
    assert load(worker_app, payment).status == "expired"
    assert midtrans_simulator.transaction(payment.gateway_order_id)["snap_canceled_at"]


def test_an_overdue_payment_with_a_transaction_is_expired_at_midtrans_too(
    worker_app, midtrans_simulator
):
    payment = open_payment(worker_app)
    midtrans_simulator.pay(payment.gateway_order_id, "bni_va", "pending")
    with worker_app.app_context():
        reconcile.expire_overdue(current_gateway(), now=payment.expires_at + timedelta(seconds=1))
    expired = load(worker_app, payment)
    assert (expired.status, expired.status_detail) == ("expired", "expired_by_worker")
    assert (
        midtrans_simulator.transaction(payment.gateway_order_id)["transaction_status"] == "expire"
    )


def test_a_last_minute_payment_wins_over_expiry(worker_app, midtrans_simulator):
    payment = open_payment(worker_app)
    midtrans_simulator.pay(payment.gateway_order_id, "bni_va", "settlement")
    with worker_app.app_context():
        assert (
            reconcile.expire_overdue(
                current_gateway(), now=payment.expires_at + timedelta(seconds=1)
            )
            == 0
        )
    assert load(worker_app, payment).status == "success"


def test_a_late_settlement_after_expiry_is_flagged(worker_app, midtrans_simulator):
    payment = open_payment(worker_app)
    midtrans_simulator.pay(payment.gateway_order_id, "bni_va", "pending")
    # Our expiry call does not reach Midtrans, and the traveller pays after all.
    midtrans_simulator.fault(status=503, operations=["core.expire"])
    with worker_app.app_context():
        reconcile.expire_overdue(current_gateway(), now=payment.expires_at + timedelta(seconds=1))
    assert load(worker_app, payment).status == "expired"
    midtrans_simulator.clear_faults()
    midtrans_simulator.control(
        "POST",
        f"/transactions/{payment.gateway_order_id}/transition",
        {"transaction_status": "settlement"},
    ).raise_for_status()

    notify(worker_app, midtrans_simulator, payment)
    assert apply_inbox(worker_app) == 1

    flagged = load(worker_app, payment)
    assert (flagged.status, flagged.status_detail, flagged.needs_review) == (
        "expired",
        "paid_after_expiry",
        True,
    )


def test_expiry_waits_while_midtrans_cannot_say_whether_it_was_paid(worker_app, midtrans_simulator):
    payment = open_payment(worker_app)
    midtrans_simulator.fault(status=503, times=1)
    with worker_app.app_context():
        assert (
            reconcile.expire_overdue(
                current_gateway(), now=payment.expires_at + timedelta(seconds=1)
            )
            == 0
        )
    assert load(worker_app, payment).status == "pending"


def test_an_unknown_order_notification_is_applied_once_the_payment_exists(
    worker_app, midtrans_simulator
):
    order_id = f"ORD-{uuid.uuid4().hex[:12].upper()}"
    body = notification(order_id, "settlement")
    # The door does not look the order up: it stores the signed notification and answers.
    assert worker_app.test_client().post("/payments/webhook", json=body).status_code == 200
    assert apply_inbox(worker_app) == 1
    with worker_app.app_context():
        [row] = db.session.scalars(
            sa.select(Notification).where(Notification.order_id == order_id)
        ).all()
        assert row.outcome == "unknown_order"

    worker_app.test_client().post("/payments", json={"order_id": order_id, "amount": AMOUNT})
    midtrans_simulator.pay(order_id, "bca_va", "settlement")

    assert apply_inbox(worker_app) == 1
    assert (
        worker_app.test_client().get(f"/payments/payment-{order_id}").get_json()["status"]
        == "success"
    )
    assert midtrans_simulator.calls("core.status", order_id) == 1


def test_the_worker_command_runs_once(worker_app):
    result = worker_app.test_cli_runner().invoke(args=["payments", "worker", "--once"])
    assert result.exit_code == 0, result.output
