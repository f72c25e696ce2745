"""Staff actions on a payment's page: resolve a review, cancel, refund, refund a paid-late attempt.

Each action is behind the staff login and its form's CSRF token, and leaves a payment_events row
with source "ops" and the staff name in its data.
"""

from __future__ import annotations

import html
import re
import threading
import uuid

import pytest
import sqlalchemy as sa

from tests.support.midtrans import apply_inbox, deliver, move, settle
from tests.support.pages import text_of
from tests.support.payments import NEVER_ISSUED_ID
from tests.support.staff import STAFF, csrf_token, log_in
from tiketq.extensions import db
from tiketq.ops import actions, limiter
from tiketq.payments import service
from tiketq.payments.models import OutboxMessage, Payment, PaymentEvent, Refund
from tiketq.payments.status import PaymentStatus, StatusDetail


@pytest.fixture(autouse=True)
def staff_app(app, monkeypatch):
    monkeypatch.setitem(app.config, "OPS_USERS", [STAFF])
    limiter.reset()
    return app


# Payments made the way the service makes them, and news applied the way the worker applies it.


def create(client, order_id: str, amount: int = 150_000) -> Payment:
    answer = client.post("/payments", json={"order_id": order_id, "amount": amount})
    assert answer.status_code == 201, answer.text
    return db.session.get(Payment, uuid.UUID(answer.get_json()["id"]))


def settled(client, sim, order_id: str, method: str = "gopay") -> Payment:
    payment = create(client, order_id)
    settle(client, sim, payment.gateway_order_id, method)
    return reload(payment)


def paid_after_expiry(client, sim, order_id: str) -> Payment:
    """An attempt the worker expired while Midtrans did not hear of it, then paid by GoPay."""
    payment = create(client, order_id)
    sim.pay(payment.gateway_order_id, "gopay", "pending")
    deliver(client, sim, payment.gateway_order_id)
    apply_inbox()
    payment = reload(payment)
    payment.transition_to(
        PaymentStatus.EXPIRED, source="expiry", detail=StatusDetail.EXPIRED_BY_WORKER
    )
    db.session.commit()
    move(client, sim, payment.gateway_order_id, "settlement")
    flagged = reload(payment)
    assert (flagged.status, flagged.status_detail, flagged.needs_review) == (
        "expired",
        "paid_after_expiry",
        True,
    )
    return flagged


def reload(payment: Payment) -> Payment:
    db.session.expire_all()
    return db.session.get(Payment, payment.id)


def ops_events(payment: Payment) -> list[PaymentEvent]:
    return list(
        db.session.scalars(
            sa.select(PaymentEvent)
            .where(PaymentEvent.payment_id == payment.id, PaymentEvent.source == "ops")
            .order_by(PaymentEvent.id)
        )
    )


def refunds(payment: Payment) -> list[Refund]:
    return list(db.session.scalars(sa.select(Refund).where(Refund.payment_id == payment.id)))


# Driving the page as staff do.


def page_of(client, payment: Payment) -> str:
    response = client.get(f"/ops/payments/{payment.id}")
    assert response.status_code == 200
    return response.text


def post(client, payment: Payment, action: str, **fields):
    """Submit one of the payment page's forms, with the page's CSRF token; follow to the page."""
    token = csrf_token(page_of(client, payment))
    return client.post(
        f"/ops/payments/{payment.id}/{action}",
        data={"csrf_token": token, **fields},
        follow_redirects=True,
    )


def hidden_fields(page: str) -> dict[str, str]:
    """The confirmation form's fields as the confirm button sends them."""
    form = re.search(r'<form[^>]*id="confirm-form".*?</form>', page, re.S).group(0)
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'<input[^>]*name="(\w+)"[^>]*value="([^"]*)"', form)
    }


def confirm(client, payment: Payment, action: str, page: str):
    """Press the confirm button of a confirmation page."""
    return client.post(
        f"/ops/payments/{payment.id}/{action}", data=hidden_fields(page), follow_redirects=True
    )


def flashes(page: str) -> list[str]:
    return [
        " ".join(html.unescape(m).split())
        for m in re.findall(r'<p class="flash"[^>]*>(.*?)</p>', page, re.S)
    ]


def section(page: str, element_id: str) -> str:
    return re.search(rf'id="{element_id}".*?</section>', page, re.S).group(0)


# Resolving a review.


def test_resolving_a_review_clears_it_and_records_the_note_and_who(
    client, midtrans_simulator, order_id
):
    payment = paid_after_expiry(client, midtrans_simulator, order_id)
    log_in(client)

    page = post(client, payment, "review/resolve", note="Called the traveller; refund at BCA.")

    assert page.status_code == 200
    assert "The review is resolved" in " ".join(flashes(page.text))
    resolved = reload(payment)
    assert resolved.needs_review is False
    assert (resolved.status, resolved.status_detail) == ("expired", "paid_after_expiry")
    [event] = ops_events(payment)
    assert event.status_detail == "review_resolved"
    assert event.data == {
        "staff": "alice",
        "note": "Called the traveller; refund at BCA.",
        "reasons": ["paid_after_expiry"],
    }
    history = section(page.text, "history")
    assert "review_resolved" in history and "Called the traveller" in history
    assert 'id="resolve-review"' not in page.text


def test_a_resolved_review_leaves_the_dashboard_list_and_its_counts(
    client, midtrans_simulator, order_id
):
    payment = paid_after_expiry(client, midtrans_simulator, order_id)
    log_in(client)
    before = client.get("/ops").text
    assert text_of(before, "review-count") == "1"
    assert text_of(before, "review-paid_after_expiry") == "1"
    assert payment.order_id in section(before, "review")

    post(client, payment, "review/resolve", note="Money kept: the traveller paid again.")

    after = client.get("/ops").text
    assert text_of(after, "review-count") == "0"
    assert text_of(after, "review-paid_after_expiry") == "0"
    assert payment.order_id not in section(after, "review")


def test_reasons_resolved_before_do_not_count_once_the_payment_is_flagged_again(
    client, midtrans_simulator, order_id
):
    payment = settled(client, midtrans_simulator, order_id)
    move(client, midtrans_simulator, payment.gateway_order_id, "partial_chargeback")
    assert reload(payment).needs_review is True
    log_in(client)
    post(client, payment, "review/resolve", note="Partial chargeback accepted.")

    move(client, midtrans_simulator, payment.gateway_order_id, "chargeback")

    flagged = reload(payment)
    assert (flagged.status, flagged.needs_review) == ("refunded", True)
    dashboard = client.get("/ops").text
    assert text_of(dashboard, "review-count") == "1"
    assert text_of(dashboard, "review-chargeback") == "1"
    assert text_of(dashboard, "review-partial_chargeback") == "0"
    page = page_of(client, payment)
    assert "chargeback" in section(page, "actions")
    assert "partial_chargeback" not in section(page, "actions")


@pytest.mark.parametrize(
    ("note", "message"),
    [("", "Write a note"), ("   ", "Write a note"), ("x" * 501, "500 characters")],
)
def test_a_review_is_resolved_only_with_a_note_of_bounded_length(
    client, midtrans_simulator, order_id, note, message
):
    payment = paid_after_expiry(client, midtrans_simulator, order_id)
    log_in(client)

    page = post(client, payment, "review/resolve", note=note)

    assert page.status_code == 200
    assert message in " ".join(flashes(page.text))
    assert reload(payment).needs_review is True
    assert ops_events(payment) == []


def test_a_payment_without_an_open_review_is_not_resolved(client, midtrans_simulator, order_id):
    payment = settled(client, midtrans_simulator, order_id)
    log_in(client)

    page = post(client, payment, "review/resolve", note="Nothing to see.")

    assert "has no open review" in " ".join(flashes(page.text))
    assert ops_events(payment) == []


# Cancel.


def test_cancel_asks_first_showing_the_amount_then_cancels_at_midtrans_and_here(
    client, midtrans_simulator, order_id
):
    payment = create(client, order_id)
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "pending")
    log_in(client)
    assert 'id="cancel-payment"' in page_of(client, payment)

    asked = post(client, payment, "cancel", reason="Flight sold out")

    assert asked.status_code == 200
    assert text_of(asked.text, "confirm-title") == (
        f"Cancel the payment of Rp 150.000 for order {order_id}?"
    )
    assert reload(payment).status == "pending"
    assert midtrans_simulator.calls("core.cancel") == 0

    page = confirm(client, payment, "cancel", asked.text)

    assert page.status_code == 200
    assert f"The payment of Rp 150.000 for order {order_id} is canceled." in flashes(page.text)
    canceled = reload(payment)
    assert canceled.status == "canceled"
    assert midtrans_simulator.transaction(payment.gateway_order_id)["transaction_status"] == (
        "cancel"
    )
    event = ops_events(payment)[-1]
    assert (event.to_status, event.data) == (
        "canceled",
        {"reason": "Flight sold out", "staff": "alice"},
    )
    assert "alice" in section(page.text, "history")


def test_a_canceled_payment_canceled_again_says_so(client, midtrans_simulator, order_id):
    payment = create(client, order_id)
    log_in(client)
    asked = post(client, payment, "cancel", reason="")
    confirm(client, payment, "cancel", asked.text)

    again = confirm(client, payment, "cancel", asked.text)

    assert again.status_code == 200
    assert "cannot become canceled" in " ".join(flashes(again.text))
    assert len([e for e in ops_events(payment) if e.to_status == "canceled"]) == 1


def test_cancel_of_a_paid_payment_is_refused_with_a_message(client, midtrans_simulator, order_id):
    payment = settled(client, midtrans_simulator, order_id, "bca_va")
    log_in(client)
    assert 'id="cancel-payment"' not in page_of(client, payment)

    asked = post(client, payment, "cancel", reason="Changed my mind")
    forced = post(client, payment, "cancel", reason="Changed my mind", confirmed="yes")

    for page in (asked, forced):
        assert page.status_code == 200
        assert "Not canceled: a success payment cannot become canceled." in flashes(page.text)
    assert reload(payment).status == "success"
    assert ops_events(payment) == []
    assert midtrans_simulator.calls("core.cancel") == 0


def test_cancel_while_midtrans_is_down_changes_nothing_and_says_so(
    client, midtrans_simulator, order_id
):
    payment = create(client, order_id)
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "pending")
    log_in(client)
    asked = post(client, payment, "cancel", reason="")
    midtrans_simulator.fault(status=503, operations=["core.cancel"])

    page = confirm(client, payment, "cancel", asked.text)

    assert page.status_code == 200
    assert "Midtrans did not answer" in " ".join(flashes(page.text))
    assert reload(payment).status == "pending"
    assert ops_events(payment) == []


# Refund.


def test_refund_asks_first_showing_the_amount_and_refunds_nothing_yet(
    client, midtrans_simulator, order_id
):
    payment = settled(client, midtrans_simulator, order_id)
    log_in(client)
    assert 'id="refund-payment"' in page_of(client, payment)

    asked = post(client, payment, "refund", amount="50.000", reason="Baggage not used")

    assert asked.status_code == 200
    assert text_of(asked.text, "confirm-title") == f"Refund Rp 50.000 of order {order_id}?"
    fields = hidden_fields(asked.text)
    assert re.fullmatch(r"[0-9a-f]{32}", fields["key"])
    assert (fields["amount"], fields["reason"]) == ("50000", "Baggage not used")
    assert refunds(payment) == []
    assert midtrans_simulator.calls("core.refund") == 0
    # Every confirmation carries a key of its own.
    again = post(client, payment, "refund", amount="50.000", reason="Baggage not used")
    assert hidden_fields(again.text)["key"] != fields["key"]


def test_a_confirmed_refund_refunds_once_however_often_it_is_submitted(
    client, midtrans_simulator, order_id
):
    payment = settled(client, midtrans_simulator, order_id)
    log_in(client)
    asked = post(client, payment, "refund", amount="50000", reason="Baggage not used")

    page = confirm(client, payment, "refund", asked.text)
    twice = confirm(client, payment, "refund", asked.text)

    assert f"Refunded Rp 50.000 of order {order_id}." in flashes(page.text)
    assert "already made" in " ".join(flashes(twice.text))
    [refund] = refunds(payment)
    assert (refund.amount, refund.status, refund.reason) == (
        50_000,
        "succeeded",
        "Baggage not used",
    )
    refunded = reload(payment)
    assert (refunded.status, refunded.status_detail, refunded.refunded_amount) == (
        "success",
        "partial_refund",
        50_000,
    )
    assert midtrans_simulator.calls("core.refund") == 1
    assert midtrans_simulator.refunded(payment.gateway_order_id) == 50_000
    [event] = ops_events(payment)
    assert event.status_detail == "partial_refund"
    assert event.data == {"refund_key": refund.refund_key, "staff": "alice"}


def test_two_confirmations_sent_at_once_refund_once(committed, midtrans_simulator, monkeypatch):
    app = committed()
    with app.app_context():
        payment = settled(app.test_client(), midtrans_simulator, f"ORD-{uuid.uuid4().hex[:12]}")
        db.session.remove()
    # The first request has stored its refund and is about to lock the payment again when the
    # second, waiting for that lock, gets it first and completes the refund.
    first_stored, second_done = threading.Event(), threading.Event()
    locks = {"first": 0}
    lock_payment = service._locked

    def locked(payment_id: uuid.UUID) -> Payment:
        if threading.current_thread().name == "first":
            locks["first"] += 1
            if locks["first"] == 2:
                first_stored.set()
                second_done.wait(10)
        return lock_payment(payment_id)

    monkeypatch.setattr(service, "_locked", locked)
    key = uuid.uuid4().hex

    def confirm_refund(after: threading.Event | None, done: threading.Event | None) -> None:
        if after is not None:
            after.wait(10)
        with app.app_context():
            actions.refund(payment.id, staff="alice", amount=50_000, reason="Twice", key=key)
            db.session.remove()
        if done is not None:
            done.set()

    threads = [
        threading.Thread(target=confirm_refund, args=(None, None), name="first"),
        threading.Thread(target=confirm_refund, args=(first_stored, second_done), name="second"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert second_done.is_set()
    with app.app_context():
        assert [(r.amount, r.status) for r in refunds(payment)] == [(50_000, "succeeded")]
        assert db.session.get(Payment, payment.id).refunded_amount == 50_000
        assert [event.status_detail for event in ops_events(payment)] == ["partial_refund"]
        db.session.remove()
    assert midtrans_simulator.refunded(payment.gateway_order_id) == 50_000


def test_a_refund_without_an_amount_refunds_all_that_is_left(client, midtrans_simulator, order_id):
    payment = settled(client, midtrans_simulator, order_id)
    log_in(client)

    asked = post(client, payment, "refund", amount="", reason="Flight canceled")
    assert text_of(asked.text, "confirm-title") == f"Refund Rp 150.000 of order {order_id}?"
    page = confirm(client, payment, "refund", asked.text)

    assert f"Refunded Rp 150.000 of order {order_id}." in flashes(page.text)
    refunded = reload(payment)
    assert (refunded.status, refunded.refunded_amount) == ("refunded", 150_000)
    assert ops_events(payment)[-1].to_status == "refunded"
    assert db.session.scalar(
        sa.select(OutboxMessage).where(
            OutboxMessage.payment_id == payment.id, OutboxMessage.event_type == "payment.refunded"
        )
    )
    assert 'id="refund-payment"' not in page.text


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("200.000", "refund of 200000 exceeds the 150000 left to refund"),
        ("0", "Give the amount in whole rupiah"),
        ("12,5", "Give the amount in whole rupiah"),
        ("lots", "Give the amount in whole rupiah"),
    ],
)
def test_a_refund_of_a_wrong_amount_is_refused_with_a_message(
    client, midtrans_simulator, order_id, amount, message
):
    payment = settled(client, midtrans_simulator, order_id)
    log_in(client)

    page = post(client, payment, "refund", amount=amount, reason="Too much")

    assert page.status_code == 200
    assert message in " ".join(flashes(page.text))
    assert 'id="confirm-form"' not in page.text
    assert refunds(payment) == []


def test_a_confirmed_refund_over_what_is_left_is_refused_with_a_message(
    client, midtrans_simulator, order_id
):
    payment = settled(client, midtrans_simulator, order_id)
    log_in(client)
    asked = post(client, payment, "refund", amount="100000", reason="First part")
    confirm(client, payment, "refund", asked.text)
    second = post(client, payment, "refund", amount="100000", reason="Second part")
    assert "exceeds the 50000 left to refund" in " ".join(flashes(second.text))

    # A confirmation made before the first refund, confirmed after it.
    stale = {**hidden_fields(asked.text), "key": uuid.uuid4().hex}
    page = client.post(f"/ops/payments/{payment.id}/refund", data=stale, follow_redirects=True)

    assert "Not refunded: refund of 100000 exceeds the 50000 left" in " ".join(flashes(page.text))
    assert [r.amount for r in refunds(payment)] == [100_000]
    assert reload(payment).refunded_amount == 100_000


def test_a_refund_midtrans_refuses_is_shown_and_recorded_as_failed(
    client, midtrans_simulator, order_id
):
    payment = settled(client, midtrans_simulator, order_id)
    # Midtrans refunded it already, and we have not heard yet.
    midtrans_simulator.control(
        "POST",
        f"/transactions/{payment.gateway_order_id}/transition",
        {"transaction_status": "refund"},
    ).raise_for_status()
    log_in(client)
    asked = post(client, payment, "refund", amount="", reason="Flight canceled")

    page = confirm(client, payment, "refund", asked.text)

    assert page.status_code == 200
    assert "Midtrans refused" in " ".join(flashes(page.text))
    [refund] = refunds(payment)
    assert refund.status == "failed"
    assert reload(payment).refunded_amount == 0


def test_a_refund_while_midtrans_is_down_says_so_and_its_confirmation_retries_it_once(
    client, midtrans_simulator, order_id
):
    payment = settled(client, midtrans_simulator, order_id)
    log_in(client)
    asked = post(client, payment, "refund", amount="50000", reason="Baggage not used")
    midtrans_simulator.fault(status=503, operations=["core.refund"], times=1)

    down = confirm(client, payment, "refund", asked.text)

    assert down.status_code == 503
    assert "Midtrans did not answer" in " ".join(flashes(down.text))
    assert hidden_fields(down.text)["key"] == hidden_fields(asked.text)["key"]
    assert [r.status for r in refunds(payment)] == ["requested"]
    assert reload(payment).refunded_amount == 0

    page = confirm(client, payment, "refund", down.text)

    assert f"Refunded Rp 50.000 of order {order_id}." in flashes(page.text)
    assert [(r.amount, r.status) for r in refunds(payment)] == [(50_000, "succeeded")]
    assert midtrans_simulator.refunded(payment.gateway_order_id) == 50_000


def test_a_payment_midtrans_cannot_refund_says_so_instead_of_a_form(
    client, midtrans_simulator, order_id
):
    payment = settled(client, midtrans_simulator, order_id, "bca_va")
    log_in(client)
    page = page_of(client, payment)
    assert 'id="refund-payment"' not in page
    assert "refunded outside Midtrans" in section(page, "actions")

    refused = post(client, payment, "refund", amount="", reason="Flight canceled")

    assert "Not refunded: bank_transfer payments cannot be refunded" in " ".join(
        flashes(refused.text)
    )
    assert refunds(payment) == []


def test_an_open_payment_offers_cancel_and_no_refund(client, order_id):
    payment = create(client, order_id)
    log_in(client)
    page = page_of(client, payment)
    assert 'id="cancel-payment"' in page
    assert 'id="refund-payment"' not in page and 'id="refund-attempt"' not in page
    assert 'id="resolve-review"' not in page

    refused = post(client, payment, "refund", amount="", reason="Too early")

    assert "Not refunded: a pending payment cannot become refunded." in flashes(refused.text)


# Refund this attempt.


def test_a_payment_paid_after_expiry_offers_to_refund_this_attempt_in_full(
    client, midtrans_simulator, order_id
):
    payment = paid_after_expiry(client, midtrans_simulator, order_id)
    log_in(client)
    page = page_of(client, payment)
    assert 'id="refund-attempt"' in page and 'id="refund-payment"' not in page

    asked = post(client, payment, "refund", reason="Paid after expiry: this attempt refunded")

    assert text_of(asked.text, "confirm-title") == f"Refund Rp 150.000 of order {order_id}?"
    assert "paid after expiry" in asked.text
    done = confirm(client, payment, "refund", asked.text)

    assert f"Refunded Rp 150.000 of order {order_id}." in flashes(done.text)
    refunded = reload(payment)
    assert (refunded.status, refunded.status_detail, refunded.refunded_amount) == (
        "expired",
        "paid_after_expiry",
        150_000,
    )
    [refund] = refunds(payment)
    assert (refund.amount, refund.status) == (150_000, "succeeded")
    assert midtrans_simulator.transaction(payment.gateway_order_id)["transaction_status"] == (
        "refund"
    )
    event = ops_events(payment)[-1]
    assert (event.to_status, event.data) == (
        "expired",
        {"refund_key": refund.refund_key, "staff": "alice"},
    )
    # Nothing is announced: the order never counted this attempt as paid.
    assert not db.session.scalar(
        sa.select(OutboxMessage).where(
            OutboxMessage.payment_id == payment.id, OutboxMessage.event_type == "payment.refunded"
        )
    )
    assert 'id="refund-attempt"' not in done.text
    # Refunding was the money; the review stays open until someone resolves it with a note.
    assert 'id="resolve-review"' in done.text


def test_refund_this_attempt_is_offered_only_for_money_that_came_late(
    client, midtrans_simulator, order_id
):
    payment = settled(client, midtrans_simulator, order_id)
    move(client, midtrans_simulator, payment.gateway_order_id, "partial_chargeback")
    log_in(client)
    page = page_of(client, payment)
    assert 'id="resolve-review"' in page
    assert 'id="refund-attempt"' not in page


# The staff login and the form's token.

ACTIONS = [
    ("review/resolve", {"note": "resolved"}),
    ("check", {}),
    ("cancel", {"reason": "", "confirmed": "yes"}),
    ("refund", {"amount": "", "reason": "x", "key": "0" * 32}),
]


@pytest.mark.parametrize(("action", "fields"), ACTIONS)
def test_each_action_without_the_form_token_is_refused_and_changes_nothing(
    client, midtrans_simulator, order_id, action, fields
):
    payment = paid_after_expiry(client, midtrans_simulator, order_id)
    log_in(client)
    midtrans_simulator.reset_calls()

    response = client.post(f"/ops/payments/{payment.id}/{action}", data=fields)

    assert response.status_code == 400
    assert "The form expired" in response.text
    assert reload(payment).needs_review is True
    assert ops_events(payment) == [] and refunds(payment) == []
    assert midtrans_simulator.calls() == 0


@pytest.mark.parametrize(("action", "fields"), ACTIONS)
def test_each_action_sends_a_visitor_without_a_session_to_the_login(
    client, order_id, action, fields
):
    payment = create(client, order_id)

    response = client.post(f"/ops/payments/{payment.id}/{action}", data=fields)

    assert response.status_code == 303
    assert response.headers["Location"].startswith("/ops/login")
    assert ops_events(payment) == []


@pytest.mark.parametrize(("action", "fields"), ACTIONS)
@pytest.mark.parametrize("payment_id", [NEVER_ISSUED_ID, "not-a-uuid"])
def test_an_action_on_an_unknown_payment_is_a_404_page(client, action, fields, payment_id):
    log_in(client)
    token = csrf_token(client.get("/ops").text)

    response = client.post(
        f"/ops/payments/{payment_id}/{action}", data={"csrf_token": token, **fields}
    )

    assert response.status_code == 404
    assert "There is no such payment." in response.text
