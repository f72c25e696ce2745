"""Staff actions clicked through in headless Chromium, each leaving its event in the history."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from playwright.sync_api import Page, expect

from tests.support.browser import Tab, sign_in
from tests.support.servers import serve_in_thread
from tests.support.simulator import Simulator
from tests.support.staff import STAFF
from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.ops import limiter
from tiketq.payments import notifications
from tiketq.payments.models import Payment, Refund
from tiketq.payments.status import PaymentStatus, StatusDetail


@dataclass
class Desk:
    """The service on loopback with one member of staff, and the simulator it asks."""

    url: str
    app: Flask
    simulator: Simulator

    def create(self, amount: int = 150_000) -> Payment:
        """A payment made the way the transaction service makes one."""
        order_id = f"ORD-{uuid.uuid4().hex[:12].upper()}"
        body = {"order_id": order_id, "amount": amount}
        response = requests.post(f"{self.url}/payments", json=body, timeout=10)
        assert response.status_code == 201, response.text
        return self.load(uuid.UUID(response.json()["id"]))

    def load(self, payment_id: uuid.UUID) -> Payment:
        with self.app.app_context():
            payment = db.session.get(Payment, payment_id)
            db.session.expunge(payment)
            db.session.remove()
            return payment

    def news(self, payment: Payment) -> None:
        """Midtrans notifies what it now knows, and the worker applies it."""
        notification = self.simulator.notification(payment.gateway_order_id)
        requests.post(f"{self.url}/payments/webhook", json=notification, timeout=10)
        with self.app.app_context():
            notifications.apply_waiting(current_gateway())
            db.session.remove()

    def settled(self, method: str = "gopay") -> Payment:
        payment = self.create()
        self.simulator.pay(payment.gateway_order_id, method, "settlement")
        self.news(payment)
        return self.load(payment.id)

    def paid_after_expiry(self) -> Payment:
        """An attempt the worker expired without Midtrans hearing of it, then paid by GoPay."""
        payment = self.create()
        self.simulator.pay(payment.gateway_order_id, "gopay", "pending")
        self.news(payment)
        with self.app.app_context():
            expiring = db.session.get(Payment, payment.id)
            expiring.transition_to(
                PaymentStatus.EXPIRED, source="expiry", detail=StatusDetail.EXPIRED_BY_WORKER
            )
            db.session.commit()
            db.session.remove()
        self.simulator.control(
            "POST",
            f"/transactions/{payment.gateway_order_id}/transition",
            {"transaction_status": "settlement"},
        ).raise_for_status()
        self.news(payment)
        flagged = self.load(payment.id)
        assert (flagged.status_detail, flagged.needs_review) == ("paid_after_expiry", True)
        return flagged

    def refunds(self, payment: Payment) -> list[tuple[int, str]]:
        with self.app.app_context():
            found = db.session.execute(
                sa.select(Refund.amount, Refund.status).where(Refund.payment_id == payment.id)
            )
            rows = [tuple(row) for row in found]
            db.session.remove()
            return rows


@pytest.fixture
def desk(committed, midtrans_simulator) -> Iterator[Desk]:
    app = committed(OPS_USERS=[STAFF])
    limiter.reset()
    url, server = serve_in_thread(app)
    yield Desk(url, app, midtrans_simulator)
    server.shutdown()


def latest_event(page: Page):
    return page.locator("#history tr.event").last


def test_refund_a_late_attempt_then_resolve_its_review_and_it_leaves_the_list(desk: Desk, tab: Tab):
    payment = desk.paid_after_expiry()
    page = tab.page
    sign_in(page, desk.url)
    expect(page.locator("#review-count")).to_have_text("1")
    expect(page.locator("#review")).to_contain_text(payment.order_id)

    page.locator("#review").get_by_text(payment.order_id).click()
    page.wait_for_url(f"{desk.url}/ops/payments/{payment.id}")
    page.click("#refund-attempt")
    expect(page.locator("#confirm-title")).to_have_text(
        f"Refund Rp 150.000 of order {payment.order_id}?"
    )
    page.click("#confirm")

    expect(page.locator(".flash")).to_have_text(f"Refunded Rp 150.000 of order {payment.order_id}.")
    refunded = latest_event(page)
    expect(refunded).to_contain_text("paid_after_expiry")
    expect(refunded).to_contain_text('"staff": "alice"')
    expect(refunded).to_contain_text("ops")
    expect(page.locator("#refunds")).to_contain_text("Rp 150.000")
    expect(page.locator("#refund-attempt")).to_have_count(0)

    page.fill("#note", "Late GoPay payment refunded in full; traveller told.")
    page.click("#resolve-review")

    expect(page.locator(".flash")).to_contain_text("The review is resolved")
    resolved = latest_event(page)
    expect(resolved).to_contain_text("review_resolved")
    expect(resolved).to_contain_text("Late GoPay payment refunded in full")
    expect(resolved).to_contain_text('"staff": "alice"')
    expect(page.locator("#resolve-review")).to_have_count(0)

    page.goto(f"{desk.url}/ops")
    expect(page.locator("#review-count")).to_have_text("0")
    expect(page.locator("#review")).not_to_contain_text(payment.order_id)
    tab.assert_clean()
    assert desk.refunds(payment) == [(150_000, "succeeded")]


def test_a_partial_refund_confirmed_twice_refunds_once(desk: Desk, tab: Tab):
    payment = desk.settled()
    page = tab.page
    sign_in(page, desk.url)
    page.goto(f"{desk.url}/ops/payments/{payment.id}")

    page.fill("#refund-amount", "50.000")
    page.fill("#refund-reason", "Baggage not used")
    page.click("#refund-payment")
    expect(page.locator("#confirm-title")).to_have_text(
        f"Refund Rp 50.000 of order {payment.order_id}?"
    )
    # Midtrans answers slowly, and the impatient second click sends the form again meanwhile.
    desk.simulator.fault(delay_seconds=1, operations=["core.refund"], times=2)
    button = page.locator("#confirm").bounding_box()
    x, y = button["x"] + button["width"] / 2, button["y"] + button["height"] / 2
    page.mouse.click(x, y)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)

    # The second click aborts the first navigation: wait for the page, not for one navigation.
    expect(page).to_have_url(f"{desk.url}/ops/payments/{payment.id}")
    expect(page.locator(".flash").first).to_contain_text("Rp 50.000")
    refunded = latest_event(page)
    expect(refunded).to_contain_text("partial_refund")
    expect(refunded).to_contain_text('"staff": "alice"')
    expect(page.locator("#refunds tbody tr")).to_have_count(1)
    assert desk.refunds(payment) == [(50_000, "succeeded")]
    assert desk.load(payment.id).refunded_amount == 50_000
    assert desk.simulator.refunded(payment.gateway_order_id) == 50_000
    tab.assert_clean()


def test_check_with_midtrans_then_cancel_an_open_payment(desk: Desk, tab: Tab):
    payment = desk.create()
    desk.simulator.pay(payment.gateway_order_id, "bca_va", "pending")
    page = tab.page
    sign_in(page, desk.url)
    page.goto(f"{desk.url}/ops/payments/{payment.id}")

    page.click("#check-now")

    expect(page.locator(".flash")).to_have_text("Midtrans was asked: the payment is pending.")
    checked = latest_event(page)
    expect(checked).to_contain_text("checked")
    expect(checked).to_contain_text('"staff": "alice"')

    page.fill("#cancel-reason", "Flight sold out")
    page.click("#cancel-payment")
    expect(page.locator("#confirm-title")).to_have_text(
        f"Cancel the payment of Rp 150.000 for order {payment.order_id}?"
    )
    page.click("#confirm")

    expect(page.locator(".flash")).to_have_text(
        f"The payment of Rp 150.000 for order {payment.order_id} is canceled."
    )
    expect(page.locator("h1 .badge")).to_have_text("canceled")
    canceled = latest_event(page)
    expect(canceled).to_contain_text("canceled")
    expect(canceled).to_contain_text('"staff": "alice"')
    expect(canceled).to_contain_text("Flight sold out")
    expect(page.locator("#cancel-payment")).to_have_count(0)
    tab.assert_clean()
    assert desk.load(payment.id).status == "canceled"
