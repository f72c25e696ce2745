"""Midtrans notifications: checked and stored at the door, applied by the worker from Midtrans's
own status answer, on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.config import SERVER_KEY
from tests.support.midtrans import apply_inbox, deliver, notification, settle, sign
from tests.support.payments import poison
from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.payments import notifications, retention
from tiketq.payments.models import Notification, OutboxMessage, Payment, PaymentEvent, utcnow

AMOUNT = 150_000


@pytest.fixture
def payment(client, order_id) -> Payment:
    """A pending payment of Rp 150.000 opened through the API (the simulator has its token)."""
    created = client.post("/payments", json={"order_id": order_id, "amount": AMOUNT}).get_json()
    return db.session.get(Payment, uuid.UUID(created["id"]))


def send(client, body, path="/payments/webhook"):
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, data=raw, content_type="application/json")


def resign(body: dict) -> dict:
    """The body signed again over its own three signed fields, as only Midtrans can."""
    return {
        **body,
        "signature_key": sign(body["order_id"], body["status_code"], body["gross_amount"]),
    }


def refreshed(payment: Payment) -> Payment:
    db.session.expire_all()
    return db.session.get(Payment, payment.id)


def outbox(payment: Payment) -> list[OutboxMessage]:
    return list(
        db.session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.payment_id == payment.id)
            .order_by(OutboxMessage.id)
        )
    )


def announced(payment: Payment) -> list[str]:
    return [message.event_type for message in outbox(payment)]


def inbox() -> list[Notification]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(Notification).order_by(Notification.id)))


def events(payment: Payment) -> list[tuple]:
    rows = db.session.scalars(
        sa.select(PaymentEvent)
        .where(PaymentEvent.payment_id == payment.id)
        .order_by(PaymentEvent.id)
    )
    return [(e.from_status, e.to_status, e.status_detail, e.source) for e in rows]


# The door: verify, store, acknowledge.


@pytest.mark.parametrize("path", ["/payments/webhook", "/webhook/midtrans"])
def test_a_notification_is_stored_and_acknowledged_without_asking_midtrans(
    client, payment, midtrans_simulator, path
):
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "settlement")
    midtrans_simulator.reset_calls()

    response = deliver(client, midtrans_simulator, payment.gateway_order_id, path)

    assert response.status_code == 200 and response.get_json()["outcome"] == "accepted"
    [stored] = inbox()
    assert (stored.outcome, stored.signature_ok, stored.attempts) == ("received", True, 0)
    assert json.loads(stored.raw_body)["order_id"] == payment.gateway_order_id
    assert refreshed(payment).status == "pending"
    assert midtrans_simulator.calls("core.status") == 0


def test_no_redirect_for_a_trailing_slash(client, payment):
    response = send(
        client, notification(payment.gateway_order_id, "settlement"), "/webhook/midtrans/"
    )
    assert not 300 <= response.status_code < 400


def _forgeries(order_id: str) -> list[dict]:
    good = notification(order_id, "settlement")
    flipped = good["signature_key"][:-1] + ("0" if good["signature_key"][-1] != "0" else "1")
    return [
        {**good, "signature_key": sign(order_id, "200", "150000.00", key="SB-Mid-server-OTHER")},
        {**good, "signature_key": flipped},
        {**good, "signature_key": good["signature_key"][:64]},
        {**good, "signature_key": good["signature_key"].upper()},
        {k: v for k, v in good.items() if k != "signature_key"},
        {**good, "signature_key": [good["signature_key"]]},
        {**good, "signature_key": 12345},
        {**good, "signature_key": "é" * 128},
        # Signed over "150000" while the body says "150000.00": the raw strings are what count.
        {**good, "signature_key": sign(order_id, "200", "150000")},
        {**good, "gross_amount": 150000.0},
        {**good, "transaction_status": "settlement", "status_code": "201"},
    ]


@pytest.mark.parametrize("forgery", range(11))
def test_forged_notifications_are_refused_and_change_nothing(
    client, payment, midtrans_simulator, forgery
):
    response = send(client, _forgeries(payment.gateway_order_id)[forgery])

    assert response.status_code == 403
    assert apply_inbox() == 0
    assert refreshed(payment).status == "pending" and outbox(payment) == []
    [stored] = inbox()
    assert (stored.outcome, stored.signature_ok) == ("bad_signature", False)
    assert midtrans_simulator.calls("core.status") == 0


@pytest.mark.parametrize(
    ("transaction_status", "status_code"),
    [
        ("settlement", "201"),
        ("settlement", "202"),
        ("pending", "200"),
        ("refund", "201"),
        ("expire", "200"),
        ("deny", "200"),
        ("capture", "202"),
        ("settlement", "407"),
    ],
)
def test_a_status_code_that_does_not_fit_is_refused_without_a_status_call(
    client, payment, midtrans_simulator, transaction_status, status_code
):
    body = resign(
        {**notification(payment.gateway_order_id, "pending"), "status_code": status_code}
        | {"transaction_status": transaction_status}
    )

    response = send(client, body)

    assert response.status_code == 403 and response.get_json()["outcome"] == "status_mismatch"
    [stored] = inbox()
    assert (stored.outcome, stored.signature_ok) == ("status_mismatch", True)
    assert "does not go with" in stored.detail
    assert apply_inbox() == 0
    assert midtrans_simulator.calls("core.status") == 0


def test_a_tampered_pending_claiming_settlement_is_refused_at_the_door(
    client, payment, midtrans_simulator
):
    order = payment.gateway_order_id
    midtrans_simulator.pay(order, "bca_va", "pending")
    tampered = {**midtrans_simulator.notification(order), "transaction_status": "settlement"}

    assert send(client, tampered).status_code == 403
    assert apply_inbox() == 0
    assert refreshed(payment).status == "pending" and outbox(payment) == []


@pytest.mark.parametrize("raw", ["", "{", "[1]", '"settlement"', "[" * 30_000 + "]" * 30_000])
def test_malformed_bodies_are_stored_and_refused(client, raw):
    assert send(client, raw).status_code == 400
    assert inbox()[-1].outcome == "malformed"


def test_a_refused_body_is_kept_truncated_with_its_length_and_hash(client, payment):
    body = {**notification(payment.gateway_order_id, "settlement"), "signature_key": "0" * 128}
    body["padding"] = "x" * 60_000
    raw = json.dumps(body).encode()

    assert send(client, raw).status_code == 403

    [stored] = inbox()
    assert len(stored.raw_body) == notifications.REFUSED_BODY_KEPT
    assert stored.body_length == len(raw)
    assert stored.body_sha256 == hashlib.sha256(raw).hexdigest()


def test_a_signed_body_with_nul_characters_is_refused_not_a_500(client, payment):
    body = notification(payment.gateway_order_id, "settlement", payment_type="bank\x00transfer")
    assert send(client, body).status_code == 400
    assert inbox()[-1].outcome == "malformed"


def test_the_server_key_never_appears_in_what_is_stored(client, payment, midtrans_simulator):
    settle(client, midtrans_simulator, payment.gateway_order_id)
    assert all(SERVER_KEY not in row.raw_body for row in inbox())
    assert SERVER_KEY not in json.dumps(refreshed(payment).payment_details)


def test_a_slow_status_api_does_not_slow_the_door(client, payment, midtrans_simulator):
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "settlement")
    body = midtrans_simulator.notification(payment.gateway_order_id)
    midtrans_simulator.fault(delay_seconds=5, operations=["core.status"])

    slowest = 0.0
    for _ in range(10):
        started = time.perf_counter()
        assert send(client, body).status_code == 200
        slowest = max(slowest, time.perf_counter() - started)

    # Generous: a 5 s status call anywhere on the path would show at once.
    assert slowest < 2.0
    assert midtrans_simulator.calls("core.status") == 0


# The worker: one status call per order, its answer applied.


def test_a_settlement_is_applied_from_the_status_answer(client, payment, midtrans_simulator):
    settle(client, midtrans_simulator, payment.gateway_order_id)

    paid = refreshed(payment)
    truth = midtrans_simulator.transaction(payment.gateway_order_id)
    assert paid.status == "success" and paid.paid_at is not None
    assert paid.payment_type == "bank_transfer"
    assert paid.gateway_transaction_id == truth["transaction_id"]
    assert paid.payment_details["va_numbers"] == truth["method_fields"]["va_numbers"]
    assert events(paid)[-1] == ("pending", "success", None, "webhook")
    assert announced(paid) == ["payment.succeeded"]
    [stored] = inbox()
    assert (stored.outcome, stored.payment_id) == ("applied", paid.id)
    assert stored.applied_at is not None and stored.next_attempt_at is None


TAMPERED = {
    "fraud_status": "accept",
    "va_numbers": [{"bank": "bca", "va_number": "99999999999"}],
    "payment_type": "p" * 40,
    "transaction_id": "00000000-0000-0000-0000-000000000000",
    "refund_amount": "150000.00",
    "metadata": {"extra_info": {"gross_amount_info": {"original_amount": "1.00"}}},
    "settlement_time": "2020-01-01 00:00:00",
}


@pytest.mark.parametrize("field", sorted(TAMPERED))
def test_a_signed_notification_with_an_unsigned_field_changed_leaves_what_midtrans_says(
    client, payment, midtrans_simulator, field
):
    order = payment.gateway_order_id
    midtrans_simulator.pay(order, "bca_va", "pending")
    genuine = midtrans_simulator.notification(order)
    tampered = {**genuine, field: TAMPERED[field]}

    assert send(client, tampered).status_code == 200
    apply_inbox()

    kept = refreshed(payment)
    truth = midtrans_simulator.transaction(order)
    assert (kept.status, kept.refunded_amount, kept.paid_at) == ("pending", 0, None)
    assert kept.payment_type == "bank_transfer"
    assert kept.gateway_transaction_id == truth["transaction_id"]
    assert kept.payment_details["va_numbers"] == truth["method_fields"]["va_numbers"]
    assert outbox(kept) == []


@pytest.mark.parametrize("claim", ["refund", "partial_refund", "settlement"])
def test_a_forged_paid_or_refund_notification_for_an_open_payment_books_nothing(
    client, payment, midtrans_simulator, claim
):
    order = payment.gateway_order_id
    midtrans_simulator.pay(order, "gopay", "pending")
    forged = notification(order, claim, refund_amount="150000.00", payment_type="gopay")

    assert send(client, forged).status_code == 200
    apply_inbox()

    kept = refreshed(payment)
    assert (kept.status, kept.refunded_amount) == ("pending", 0)
    assert outbox(kept) == []


def test_a_challenged_card_stays_processing_whatever_the_copy_claims(
    client, payment, midtrans_simulator
):
    order = payment.gateway_order_id
    midtrans_simulator.pay(order, "credit_card", "challenge")
    claimed_accept = {**midtrans_simulator.notification(order), "fraud_status": "accept"}

    send(client, claimed_accept)
    apply_inbox()

    held = refreshed(payment)
    assert (held.status, held.status_detail, held.needs_review) == (
        "processing",
        "fraud_challenge",
        True,
    )
    assert outbox(held) == []


def test_ten_copies_of_one_notification_cost_one_status_call(client, payment, midtrans_simulator):
    order = payment.gateway_order_id
    midtrans_simulator.pay(order, "bca_va", "settlement")
    body = midtrans_simulator.notification(order)
    midtrans_simulator.reset_calls()

    for _ in range(10):
        assert send(client, body).status_code == 200
    apply_inbox()
    assert send(client, body).status_code == 200  # a redelivery after it was applied
    apply_inbox()

    assert midtrans_simulator.calls("core.status", order) == 1
    outcomes = sorted(row.outcome for row in inbox())
    assert outcomes == ["applied"] + ["duplicate"] * 10
    assert announced(refreshed(payment)) == ["payment.succeeded"]


def test_a_late_pending_after_settlement_changes_nothing(client, payment, midtrans_simulator):
    order = payment.gateway_order_id
    midtrans_simulator.pay(order, "bca_va", "pending")
    pending = midtrans_simulator.notification(order)
    settle(client, midtrans_simulator, order)

    send(client, pending)
    apply_inbox()

    assert refreshed(payment).status == "success"
    assert inbox()[-1].outcome == "duplicate"
    assert announced(payment) == ["payment.succeeded"]


def test_a_card_captured_at_once_confirms_with_its_transaction_id_and_type(
    client, payment, midtrans_simulator
):
    settle(client, midtrans_simulator, payment.gateway_order_id, "credit_card", "capture")

    [message] = outbox(refreshed(payment))
    assert message.event_type == "payment.succeeded"
    truth = midtrans_simulator.transaction(payment.gateway_order_id)
    assert message.payload["gateway_transaction_id"] == truth["transaction_id"]
    assert message.payload["payment_type"] == "credit_card"
    assert message.payload["amount"] == AMOUNT and message.payload["paid_at"] is not None


def test_a_denied_card_then_a_paid_va_ends_paid(client, payment, midtrans_simulator):
    order = payment.gateway_order_id
    settle(client, midtrans_simulator, order, "credit_card", "deny")
    assert refreshed(payment).status == "failed"

    settle(client, midtrans_simulator, order, "bca_va", "settlement")

    assert refreshed(payment).status == "success"
    assert announced(payment) == ["payment.failed", "payment.succeeded"]


def test_a_gateway_fee_is_not_mistaken_for_an_overpayment(client, payment, midtrans_simulator):
    order = payment.gateway_order_id
    response = midtrans_simulator.control(
        "POST",
        f"/transactions/{order}/pay",
        {"method": "bca_va", "outcome": "settlement", "customer_fee": 4_500},
    )
    response.raise_for_status()
    deliver(client, midtrans_simulator, order)
    apply_inbox()

    assert refreshed(payment).status == "success"


def test_an_unknown_order_waits_and_is_applied_once_the_payment_exists(
    client, order_id, midtrans_simulator
):
    early = notification(order_id, "settlement")
    assert send(client, early).status_code == 200
    apply_inbox()
    assert inbox()[0].outcome == "unknown_order"

    created = client.post("/payments", json={"order_id": order_id, "amount": AMOUNT}).get_json()
    midtrans_simulator.pay(order_id, "bca_va", "settlement")
    apply_inbox()

    assert client.get(f"/payments/{created['id']}").get_json()["status"] == "success"
    assert inbox()[0].outcome == "applied"


def test_a_status_api_outage_keeps_the_rows_waiting_then_applies_them(
    client, payment, midtrans_simulator
):
    order = payment.gateway_order_id
    midtrans_simulator.pay(order, "bca_va", "settlement")
    midtrans_simulator.fault(status=503, operations=["core.status"])

    for _ in range(3):
        started = time.perf_counter()
        assert deliver(client, midtrans_simulator, order).status_code == 200
        assert time.perf_counter() - started < 2.0
    apply_inbox()

    waiting = inbox()
    assert {(row.outcome, row.attempts) for row in waiting} == {("received", 1)}
    assert all(row.last_error and row.next_attempt_at > utcnow() for row in waiting)
    assert refreshed(payment).status == "pending"

    midtrans_simulator.clear_faults()
    later = utcnow() + timedelta(minutes=1)
    notifications.apply_waiting(current_gateway(), now=later)

    assert refreshed(payment).status == "success"
    assert announced(payment) == ["payment.succeeded"]


def test_an_answer_about_another_transaction_is_refused_and_never_applied(
    client, payment, order_id, midtrans_simulator
):
    other = client.post("/payments", json={"order_id": order_id + "X", "amount": AMOUNT}).get_json()
    midtrans_simulator.pay(other["gateway_order_id"], "dana", "settlement")
    midtrans_simulator.pay(payment.gateway_order_id, "dana", "pending")
    # DANA is looked up by transaction id: one pointing at another order must not be believed.
    victim = refreshed(payment)
    victim.payment_type = "dana"
    victim.gateway_transaction_id = midtrans_simulator.transaction(other["gateway_order_id"])[
        "transaction_id"
    ]
    db.session.commit()

    deliver(client, midtrans_simulator, payment.gateway_order_id)
    apply_inbox()

    kept = refreshed(payment)
    assert kept.status == "pending" and outbox(kept) == []
    [row] = [r for r in inbox() if r.order_id == payment.gateway_order_id]
    assert row.outcome == "received" and "not" in row.last_error


def test_a_row_that_raises_is_marked_failed_and_the_round_goes_on(
    client, payment, order_id, midtrans_simulator, monkeypatch
):
    healthy = client.post(
        "/payments", json={"order_id": order_id + "H", "amount": AMOUNT}
    ).get_json()
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "settlement")
    midtrans_simulator.pay(healthy["gateway_order_id"], "bca_va", "settlement")
    deliver(client, midtrans_simulator, payment.gateway_order_id)
    deliver(client, midtrans_simulator, healthy["gateway_order_id"])
    poison(monkeypatch, notifications, "apply_answer", payment)
    apply_inbox()

    assert client.get(f"/payments/{healthy['id']}").get_json()["status"] == "success"
    [bad] = [r for r in inbox() if r.order_id == payment.gateway_order_id]
    assert (bad.outcome, bad.attempts) == ("failed", 1)
    assert "ValueError: poison" in bad.last_error and bad.next_attempt_at is not None

    # Bounded: after the last try it stays failed for a person, and is never claimed again.
    later = utcnow()
    for _ in range(notifications.MAX_APPLY_ATTEMPTS):
        later += timedelta(hours=1)
        notifications.apply_waiting(current_gateway(), now=later)
    [bad] = [r for r in inbox() if r.order_id == payment.gateway_order_id]
    assert (bad.attempts, bad.next_attempt_at) == (notifications.MAX_APPLY_ATTEMPTS, None)
    assert refreshed(payment).status == "pending"


def test_refused_notifications_are_purged_after_their_retention(client, payment):
    send(client, {**notification(payment.gateway_order_id, "settlement"), "signature_key": "x"})
    send(client, notification(payment.gateway_order_id, "settlement"))

    now = utcnow()
    assert retention.purge_batch("rejected", now - timedelta(days=7), now=now) == 0
    purged = retention.purge_batch("rejected", now + timedelta(days=1), now=now)

    assert purged == 1
    assert [row.outcome for row in inbox()] == ["received"]


STREAM = ["pending", "pending", "settlement", "settlement"]


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(STREAM))
def test_every_order_of_a_notification_stream_ends_paid_with_one_confirmation(
    client, midtrans_simulator, order
):
    order_id = f"ORD-{uuid.uuid4().hex[:12].upper()}"
    created = client.post("/payments", json={"order_id": order_id, "amount": AMOUNT}).get_json()
    midtrans_simulator.pay(order_id, "bca_va", "pending")
    bodies = {"pending": midtrans_simulator.notification(order_id)}
    midtrans_simulator.control(
        "POST", f"/transactions/{order_id}/transition", {"transaction_status": "settlement"}
    ).raise_for_status()
    bodies["settlement"] = midtrans_simulator.notification(order_id)
    for status in order:
        assert send(client, bodies[status]).status_code == 200
        apply_inbox()

    payment = db.session.get(Payment, uuid.UUID(created["id"]))
    assert payment.status == "success"
    assert announced(payment) == ["payment.succeeded"]
