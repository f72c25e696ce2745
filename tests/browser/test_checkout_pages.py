"""The traveller's pages in headless Chromium: pay through the simulator's Snap, see the truth."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from playwright.sync_api import expect

from tests.support.browser import SARI, SETTLED, Shop, Tab, pay_in_snap, snap_frame
from tests.support.config import app_config
from tests.support.production import PRODUCTION_CONFIG
from tests.support.servers import serve_in_thread
from tiketq import create_app
from tiketq.extensions import db
from tiketq.payments.models import Payment, utcnow


def test_a_va_payment_shows_the_number_then_turns_paid_by_itself(shop: Shop, tab: Tab, order_id):
    payment = shop.open_payment(order_id)
    page = tab.page
    page.goto(payment["payment_url"])
    expect(page.locator("#total")).to_have_text("Rp 1.250.000")

    shown = pay_in_snap(page, "bca_va", "pending")

    page.wait_for_url(f"**/receipt/{payment['id']}")
    va_number = page.locator("#va-number")
    expect(va_number).to_have_text(re.compile(r"^\d{11}$"), timeout=SETTLED)
    assert va_number.inner_text() in shown
    expect(page.locator("#status-title")).to_have_text("Menunggu pembayaran")

    shop.simulator.control(
        "POST", f"/transactions/{order_id}/transition", {"transaction_status": "settlement"}
    ).raise_for_status()

    expect(page.locator("#status-title")).to_have_text("Lunas", timeout=SETTLED)
    expect(page.locator("#reference")).not_to_be_empty()
    tab.assert_clean()


def test_a_closed_popup_can_be_reopened_with_the_same_token(shop: Shop, tab: Tab, order_id):
    payment = shop.open_payment(order_id)
    page = tab.page
    page.goto(payment["payment_url"])

    page.click("#pay")
    snap_frame(page).locator("#close").click()

    expect(page.locator("iframe")).to_have_count(0)
    expect(page.locator("#pay-closed")).to_be_visible()
    expect(page.locator("#pay")).to_have_text("Buka lagi jendela pembayaran")
    page.click("#pay")
    src = page.locator("iframe").get_attribute("src")
    assert f"/snap/popup/{payment['snap_token']}?" in src
    snap_frame(page).locator("#close").click()
    expect(page).to_have_url(payment["payment_url"])

    pay_in_snap(page, "echannel", "pending")
    page.wait_for_url("**/receipt/**")
    expect(page.locator("#biller-code")).to_have_text("70012", timeout=SETTLED)
    expect(page.locator("#bill-key")).to_have_text(re.compile(r"^\d{12}$"))
    tab.assert_clean()


def test_the_pages_fit_a_360_pixel_phone(shop: Shop, phone_tab: Tab, order_id):
    payment = shop.open_payment(order_id)
    page = phone_tab.page
    page.goto(payment["payment_url"])

    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    pay = page.locator("#pay").bounding_box()
    assert pay["x"] >= 0 and pay["x"] + pay["width"] <= 360 and pay["height"] >= 44
    page.tap("#pay")
    frame_box = page.locator("iframe").bounding_box()
    assert frame_box["width"] <= 360

    snap_frame(page).locator("input[value=indomaret]").tap()
    snap_frame(page).locator("#pay-button").tap()
    snap_frame(page).locator("#done").tap()
    page.wait_for_url("**/receipt/**")
    expect(page.locator("#payment-code")).to_have_text(re.compile(r"^\d{14}$"), timeout=SETTLED)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    phone_tab.assert_clean()


def test_the_english_switch_changes_the_page_and_snap(shop: Shop, tab: Tab, order_id):
    payment = shop.open_payment(order_id)
    page = tab.page
    page.goto(payment["payment_url"])
    expect(page.locator("html")).to_have_attribute("lang", "id")
    expect(page.locator("#pay")).to_have_text("Bayar sekarang")

    page.click("a[hreflang=en]")

    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#pay")).to_have_text("Pay now")
    page.click("#pay")
    expect(snap_frame(page).locator("legend")).to_have_text("Payment method")
    snap_frame(page).locator("#close").click()
    tab.assert_clean()


def test_hostile_customer_text_stays_text(shop: Shop, tab: Tab, order_id):
    # No spaces: the pages show a name's first word only, and all of this must reach them.
    name = '"><img/src=x/onerror=alert(1)><script>alert(2)</script>'
    payment = shop.open_payment(order_id, customer_details={**SARI, "first_name": name})
    page = tab.page
    for path in (f"/checkout/{payment['id']}", f"/receipt/{payment['id']}"):
        page.goto(shop.url + path)
        expect(page.locator("#customer-name")).to_have_text(name)
    tab.assert_clean()


def test_the_transaction_services_body_is_paid_with_masked_details(shop: Shop, tab: Tab, order_id):
    payment = shop.open_payment(order_id, customer_details={"email": "rani@example.com"})
    page = tab.page
    page.goto(payment["payment_url"])
    expect(page.locator("#customer-email")).to_have_text("r***@example.com")
    expect(page.locator("form")).to_have_count(0)

    pay_in_snap(page, "gopay", "settlement")

    page.wait_for_url(f"**/receipt/{payment['id']}")
    expect(page.locator("#status-title")).to_have_text("Lunas", timeout=SETTLED)
    expect(page.locator("#customer-email")).to_have_text("r***@example.com")
    assert "rani@" not in page.content()
    tab.assert_clean()


@pytest.fixture
def production_shop(committed) -> Iterator[tuple[Flask, str]]:
    """The unchanged production configuration, served; it never gets to call Midtrans."""
    committed()  # its teardown empties the tables this app writes to
    app = create_app(app_config(**PRODUCTION_CONFIG))
    url, server = serve_in_thread(app)
    yield app, url
    server.shutdown()
    with app.app_context():
        db.engine.dispose()


def stored_payment(app: Flask, order_id: str, token: str) -> str:
    """A payment as create_payment leaves it after Midtrans issued `token`."""
    with app.app_context():
        payment = Payment(
            order_id=order_id,
            gateway_order_id=order_id,
            amount=1_250_000,
            customer=SARI,
            items=[],
            snap_token=token,
            snap_redirect_url=f"https://app.midtrans.com/snap/v4/redirection/{token}",
            expires_at=utcnow() + timedelta(hours=1),
            request_fingerprint="stored-by-the-test",
        )
        db.session.add(payment)
        db.session.commit()
        return str(payment.id)


# Stands in for https://app.midtrans.com/snap/snap.js and records how the page calls it.
SNAP_STUB = """
(function () {
  var clientKey = document.currentScript.getAttribute("data-client-key");
  window.snap = {
    pay: function (token, options) {
      window.snapCall = { token: token, clientKey: clientKey, language: options.language };
      options.onClose();
    },
  };
})();
"""


def test_the_production_page_loads_snap_from_midtrans_under_its_csp(
    production_shop, tab: Tab, order_id
):
    app, url = production_shop
    payment_id = stored_payment(app, order_id, "prod-token-0001")
    outside: list[str] = []
    context = tab.page.context
    # The last route registered is asked first: Snap.js is stubbed, anything else leaving
    # the machine is refused and remembered.
    context.route(
        re.compile(r"^https?://(?!127\.0\.0\.1[:/])"),
        lambda route: (outside.append(route.request.url), route.abort()),
    )
    context.route(
        "https://app.midtrans.com/snap/snap.js",
        lambda route: route.fulfill(body=SNAP_STUB, content_type="text/javascript"),
    )

    tab.page.goto(f"{url}/checkout/{payment_id}")
    tab.page.click("#pay")

    assert tab.page.evaluate("window.snapCall") == {
        "token": "prod-token-0001",
        "clientKey": "Mid-client-PRODTEST",
        "language": "id",
    }
    expect(tab.page.locator("#pay-closed")).to_be_visible()
    assert "Mid-server-PRODTEST" not in tab.page.content()
    assert outside == []
    tab.assert_clean()


def test_a_script_without_the_nonce_is_blocked(shop: Shop, tab: Tab, order_id):
    payment = shop.open_payment(order_id)
    tab.page.goto(payment["payment_url"])
    tab.page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.body.appendChild(script);
        }"""
    )
    assert tab.page.evaluate("window.injected") is None
    for _ in range(50):
        if tab.csp_violations:
            break
        tab.page.wait_for_timeout(100)
    assert [v.split(" ")[0] for v in tab.csp_violations] == ["script-src-elem"]
