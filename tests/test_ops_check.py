"""Staff's "check with Midtrans now": the same apply path as the worker, from the ops page."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.support.staff import STAFF, csrf_token, log_in
from tiketq.extensions import db
from tiketq.ops import limiter
from tiketq.payments.models import Payment


@pytest.fixture(autouse=True)
def staff_app(app, monkeypatch):
    monkeypatch.setitem(app.config, "OPS_USERS", [STAFF])
    limiter.reset()
    return app


@pytest.fixture
def payment(client, order_id) -> Payment:
    created = client.post("/payments", json={"order_id": order_id, "amount": 150_000}).get_json()
    return db.session.get(Payment, uuid.UUID(created["id"]))


def check(client, payment: Payment):
    page = client.get(f"/ops/payments/{payment.id}").text
    return client.post(
        f"/ops/payments/{payment.id}/check",
        data={"csrf_token": csrf_token(page)},
        follow_redirects=True,
    )


def test_a_check_applies_what_midtrans_says_now(client, payment, midtrans_simulator):
    log_in(client)
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "settlement")

    page = check(client, payment)

    assert page.status_code == 200
    assert "the payment is success" in page.text
    db.session.expire_all()
    checked = db.session.get(Payment, payment.id)
    assert checked.status == "success"
    applied, asked = checked.events[-2:]
    assert (applied.to_status, applied.source) == ("success", "ops")
    assert (asked.status_detail, asked.source, asked.data) == ("checked", "ops", {"staff": "alice"})
    assert midtrans_simulator.calls("core.status", payment.gateway_order_id) == 1


def test_a_check_with_nothing_new_is_still_recorded_with_who_asked(
    client, payment, midtrans_simulator
):
    log_in(client)
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "pending")

    page = check(client, payment)

    assert "the payment is pending" in page.text
    db.session.expire_all()
    checked = db.session.get(Payment, payment.id)
    asked = checked.events[-1]
    assert (asked.from_status, asked.to_status, asked.status_detail) == (
        "pending",
        "pending",
        "checked",
    )
    assert (asked.source, asked.data) == ("ops", {"staff": "alice"})
    assert checked.status_detail is None
    history = page.text.split('id="history"')[1].split("</section>")[0]
    assert "checked" in history and "alice" in history


def test_a_check_while_midtrans_is_down_changes_nothing_and_says_so(
    client, payment, midtrans_simulator
):
    log_in(client)
    midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "settlement")
    midtrans_simulator.fault(status=503, operations=["core.status"])

    page = check(client, payment)

    assert page.status_code == 200 and "Midtrans did not answer" in page.text
    db.session.expire_all()
    unchanged = db.session.get(Payment, payment.id)
    assert unchanged.status == "pending"
    assert [event.source for event in unchanged.events] == ["api"]


def test_a_check_needs_a_signed_in_member_of_staff_and_the_form(client, payment):
    anonymous = client.post(f"/ops/payments/{payment.id}/check")
    assert anonymous.status_code in (302, 303, 401, 403)
    log_in(client)
    without_form = client.post(f"/ops/payments/{payment.id}/check")
    assert without_form.status_code == 400
    assert re.search("form expired", without_form.text)
