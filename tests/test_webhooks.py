"""Midtrans notifications: verified, stored first, applied once, in order, on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SERVER_KEY
from tests.midtrans import notification, sign
from tiketq.extensions import db
from tiketq.payments.models import Notification, OutboxMessage, Payment, PaymentEvent

AMOUNT = 150_000


@pytest.fixture
def payment(client, order_id) -> Payment:
    """A pending payment of Rp 150.000 opened through the API."""
    created = client.post("/payments", json={"order_id": order_id, "amount": AMOUNT}).get_json()
    return db.session.get(Payment, uuid.UUID(created["id"]))


def send(client, body, path="/payments/webhook"):
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, data=raw, content_type="application/json")


def refreshed(payment: Payment) -> Payment:
    db.session.expire_all()
    return db.session.get(Payment, payment.id)


def outbox(payment: Payment) -> list[str]:
    rows = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.payment_id == payment.id)
    )
    return sorted(m.event_type for m in rows)


def inbox() -> list[Notification]:
    return list(db.session.scalars(sa.select(Notification).order_by(Notification.id)))


def events(payment: Payment) -> list[tuple]:
    rows = db.session.scalars(
        sa.select(PaymentEvent)
        .where(PaymentEvent.payment_id == payment.id)
        .order_by(PaymentEvent.id)
    )
    return [(e.from_status, e.to_status, e.status_detail, e.source) for e in rows]


@pytest.mark.parametrize("path", ["/payments/webhook", "/webhook/midtrans"])
def test_a_valid_settlement_marks_the_payment_paid_once(client, payment, path):
    response = send(client, notification(payment.gateway_order_id, "settlement"), path)

    assert response.status_code == 200 and response.get_json()["outcome"] == "applied"
    paid = refreshed(payment)
    assert paid.status == "success" and paid.paid_at == datetime(2026, 11, 26, 7, 5, tzinfo=UTC)
    assert paid.payment_type == "bank_transfer"
    assert paid.payment_details["va_numbers"] == [{"bank": "bca", "va_number": "12345678901"}]
    assert events(paid)[-1] == ("pending", "success", None, "webhook")
    assert outbox(paid) == ["payment.succeeded"]
    [stored] = inbox()
    assert stored.signature_ok and stored.outcome == "applied" and stored.payment_id == paid.id
    assert json.loads(stored.raw_body)["order_id"] == payment.gateway_order_id


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
def test_forged_notifications_are_refused_and_change_nothing(client, payment, forgery):
    response = send(client, _forgeries(payment.gateway_order_id)[forgery])

    assert response.status_code == 403
    assert refreshed(payment).status == "pending" and outbox(payment) == []
    [stored] = inbox()
    assert (stored.outcome, stored.signature_ok) == ("bad_signature", False)


def test_a_duplicate_is_answered_200_without_a_second_change(client, payment):
    body = notification(payment.gateway_order_id, "settlement")
    send(client, body)
    again = send(client, body)

    assert again.status_code == 200 and again.get_json()["outcome"] == "duplicate"
    assert outbox(payment) == ["payment.succeeded"]
    assert [e[1] for e in events(payment)] == ["pending", "success"]


def test_a_replayed_pending_after_settlement_is_recorded_and_ignored(client, payment):
    pending = notification(payment.gateway_order_id, "pending")
    send(client, pending)
    send(client, notification(payment.gateway_order_id, "settlement"))

    replay = send(client, pending)

    assert replay.status_code == 200 and replay.get_json()["outcome"] in {"duplicate", "stale"}
    assert refreshed(payment).status == "success"


def test_settlement_before_pending_still_ends_paid(client, payment):
    send(client, notification(payment.gateway_order_id, "settlement"))
    late = send(client, notification(payment.gateway_order_id, "pending"))
    assert late.get_json()["outcome"] == "stale"
    assert refreshed(payment).status == "success"


def test_a_challenged_card_is_processing_until_accepted(client, payment):
    card = {"payment_type": "credit_card", "masked_card": "48111111-1114", "bank": "bni"}
    send(
        client, notification(payment.gateway_order_id, "capture", fraud_status="challenge", **card)
    )
    held = refreshed(payment)
    assert (held.status, held.status_detail, held.needs_review) == (
        "processing",
        "fraud_challenge",
        True,
    )
    assert outbox(held) == []

    send(client, notification(payment.gateway_order_id, "capture", fraud_status="accept", **card))
    assert refreshed(payment).status == "success"
    assert refreshed(payment).payment_details["masked_card"] == "48111111-1114"


def test_a_fraud_denied_capture_fails(client, payment):
    send(client, notification(payment.gateway_order_id, "capture", fraud_status="deny"))
    assert (refreshed(payment).status, refreshed(payment).status_detail) == (
        "failed",
        "fraud_denied",
    )


def test_a_denied_card_then_a_paid_va_ends_paid(client, payment):
    send(client, notification(payment.gateway_order_id, "deny", payment_type="credit_card"))
    assert refreshed(payment).status == "failed"
    send(client, notification(payment.gateway_order_id, "settlement"))
    assert refreshed(payment).status == "success"
    assert outbox(payment) == ["payment.failed", "payment.succeeded"]


@pytest.mark.parametrize(
    ("ending", "status", "flag"),
    [("expire", "expired", "paid_after_expiry"), ("cancel", "canceled", "paid_after_cancel")],
)
def test_money_after_expiry_or_cancel_is_flagged_not_lost(client, payment, ending, status, flag):
    send(client, notification(payment.gateway_order_id, ending))
    response = send(client, notification(payment.gateway_order_id, "settlement"))

    assert response.status_code == 200 and response.get_json()["outcome"] == "flagged"
    flagged = refreshed(payment)
    assert (flagged.status, flagged.status_detail, flagged.needs_review) == (status, flag, True)
    assert "payment.succeeded" not in outbox(flagged)


def test_a_second_attempt_paid_while_another_is_live_is_flagged_as_paid_twice(client, payment):
    send(client, notification(payment.gateway_order_id, "deny"))
    second = client.post(
        "/payments", json={"order_id": payment.order_id, "amount": AMOUNT}
    ).get_json()
    assert second["gateway_order_id"].endswith("~2")
    send(client, notification(second["gateway_order_id"], "settlement"))

    response = send(client, notification(payment.gateway_order_id, "settlement"))

    assert response.get_json()["outcome"] == "flagged"
    assert refreshed(payment).status_detail == "paid_twice"


@pytest.mark.parametrize(
    "fields",
    [{"gross_amount": "150001.00"}, {"gross_amount": "1500.00"}, {"currency": "USD"}],
)
def test_an_amount_mismatch_never_becomes_success(client, payment, fields):
    body = notification(payment.gateway_order_id, "settlement", **fields)
    response = send(client, body)

    assert response.status_code == 200 and response.get_json()["outcome"] == "amount_mismatch"
    held = refreshed(payment)
    assert (held.status, held.status_detail, held.needs_review) == (
        "processing",
        "amount_mismatch",
        True,
    )
    assert outbox(held) == []


def test_a_gateway_fee_is_not_mistaken_for_an_overpayment(client, payment):
    fee = {"metadata": {"extra_info": {"gross_amount_info": {"original_amount": "150000.00"}}}}
    send(
        client,
        notification(payment.gateway_order_id, "settlement", gross_amount="154500.00", **fee),
    )
    assert refreshed(payment).status == "success"


def test_refunds_from_midtrans_are_booked(client, payment):
    order = payment.gateway_order_id
    send(client, notification(order, "settlement"))
    send(client, notification(order, "partial_refund", refund_amount="50000.00"))
    partial = refreshed(payment)
    assert (partial.status, partial.status_detail, partial.refunded_amount) == (
        "success",
        "partial_refund",
        50_000,
    )

    send(client, notification(order, "refund", refund_amount="150000.00"))
    refunded = refreshed(payment)
    assert (refunded.status, refunded.refunded_amount) == ("refunded", 150_000)
    assert outbox(refunded) == ["payment.refunded", "payment.succeeded"]


def test_a_refund_that_overtakes_its_settlement_books_the_payment_then_the_refund(client, payment):
    order = payment.gateway_order_id
    first = send(client, notification(order, "refund", refund_amount="150000.00"))

    assert first.status_code == 200 and first.get_json()["outcome"] == "applied"
    refunded = refreshed(payment)
    assert (refunded.status, refunded.refunded_amount) == ("refunded", 150_000)
    assert refunded.paid_at is not None
    assert events(refunded)[-2:] == [
        ("pending", "success", None, "webhook"),
        ("success", "refunded", None, "webhook"),
    ]
    assert outbox(refunded) == ["payment.refunded", "payment.succeeded"]

    late = send(client, notification(order, "settlement"))
    assert late.get_json()["outcome"] == "stale"
    assert refreshed(payment).status == "refunded" and len(events(payment)) == 3


def test_an_unknown_order_is_kept_and_applied_when_midtrans_retries(client, order_id):
    early = notification(order_id, "settlement")
    first = send(client, early)
    assert first.status_code == 404 and inbox()[0].outcome == "unknown_order"

    client.post("/payments", json={"order_id": order_id, "amount": AMOUNT})
    retry = send(client, early)

    assert retry.status_code == 200 and retry.get_json()["outcome"] == "applied"
    assert client.get(f"/payments/payment-{order_id}").get_json()["status"] == "success"


@pytest.mark.parametrize("raw", ["", "{", "[1]", '"settlement"', "[" * 30_000 + "]" * 30_000])
def test_malformed_bodies_are_stored_and_refused(client, raw):
    assert send(client, raw).status_code == 400
    assert inbox()[-1].outcome == "malformed"


def test_an_unsupported_status_is_recorded_and_acknowledged(client, payment):
    body = notification(payment.gateway_order_id, "settlement")
    body["transaction_status"] = "something_new"
    assert send(client, body).get_json()["outcome"] == "unsupported"
    assert refreshed(payment).status == "pending"


def test_with_confirmation_on_the_status_api_wins_over_the_body(
    app, client, payment, midtrans_simulator, monkeypatch
):
    monkeypatch.setitem(app.config, "MIDTRANS_CONFIRM_PAID", True)
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "pending")
    forged_but_signed = notification(payment.gateway_order_id, "settlement")

    assert send(client, forged_but_signed).status_code == 200
    assert refreshed(payment).status == "pending"

    midtrans_simulator.control(
        "POST",
        f"/transactions/{payment.gateway_order_id}/transition",
        {"transaction_status": "settlement"},
    )
    send(
        client,
        notification(payment.gateway_order_id, "settlement", settlement_time="2026-11-26 14:06:00"),
    )
    assert refreshed(payment).status == "success"


def test_with_confirmation_on_a_status_api_outage_is_503(
    app, client, payment, midtrans_simulator, monkeypatch
):
    monkeypatch.setitem(app.config, "MIDTRANS_CONFIRM_PAID", True)
    midtrans_simulator.fault(status=503, times=1)
    assert send(client, notification(payment.gateway_order_id, "settlement")).status_code == 503
    assert refreshed(payment).status == "pending"


STREAM = ["pending", "pending", "settlement", "settlement"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(STREAM))
def test_every_order_of_a_notification_stream_ends_paid_with_one_confirmation(client, order):
    order_id = f"ORD-{uuid.uuid4().hex[:12].upper()}"
    created = client.post("/payments", json={"order_id": order_id, "amount": AMOUNT}).get_json()
    for status in order:
        assert send(client, notification(order_id, status)).status_code == 200

    payment = db.session.get(Payment, uuid.UUID(created["id"]))
    assert payment.status == "success"
    assert outbox(payment) == ["payment.succeeded"]


def test_the_server_key_never_appears_in_what_is_stored(client, payment):
    send(client, notification(payment.gateway_order_id, "settlement"))
    assert SERVER_KEY not in inbox()[0].raw_body
