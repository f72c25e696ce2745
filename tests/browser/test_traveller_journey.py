"""The traveller's journey in Chromium: one tap to Snap, nothing typed, and back to TiketQ."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from playwright.sync_api import Browser, Locator, Page, expect

from tests.support.api import transaction_service_payload
from tests.support.browser import (
    DESKTOP,
    PHONE,
    SETTLED,
    Shop,
    Tab,
    choose_in_snap,
    pay_in_snap,
    snap_frame,
    watched_tab,
)
from tests.support.servers import serve_in_thread

SCREENS: dict[str, dict[str, Any]] = {
    "phone": {"viewport": PHONE, "is_mobile": True, "has_touch": True, "device_scale_factor": 2},
    "desktop": {"viewport": DESKTOP},
}
LOCALES = {"id": "id-ID", "en": "en-US"}
PAID = {"id": "Lunas", "en": "Paid"}
BACK = {"id": "Kembali ke TiketQ", "en": "Back to TiketQ"}
# TiketQ's own order page, where FINISH_URL leads; an icon so that no request of it fails.
ORDER_PAGE = (
    '<!doctype html><html><head><link rel="icon" href="data:,"><title>TiketQ</title></head>'
    '<body><h1 id="order">{order_id}</h1></body></html>'
)


@pytest.fixture
def tiketq_orders(shop: Shop) -> Iterator[str]:
    """TiketQ's order pages on another local server, configured as FINISH_URL."""
    site = Flask("tiketq_orders")
    site.add_url_rule(
        "/orders/<order_id>", "order", lambda order_id: ORDER_PAGE.format(order_id=order_id)
    )
    url, server = serve_in_thread(site)
    shop.app.config["FINISH_URL"] = url + "/orders/{order_id}"
    shop.app.config["FINISH_URL_HOSTS"] = frozenset({"127.0.0.1"})
    yield url
    server.shutdown()


@pytest.fixture(params=sorted(SCREENS))
def screen(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=sorted(LOCALES))
def lang(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def traveller(browser: Browser, screen: str, lang: str) -> Iterator[Tab]:
    """A traveller's page on this screen whose browser prefers this language."""
    yield from watched_tab(browser, locale=LOCALES[lang], **SCREENS[screen])


@pytest.fixture
def clipboard_tab(browser: Browser) -> Iterator[Tab]:
    """A phone page that may read and write the clipboard, as a tap on a copy button asks."""
    granted = ["clipboard-read", "clipboard-write"]
    yield from watched_tab(browser, viewport=PHONE, has_touch=True, permissions=granted)


@pytest.fixture
def no_script_tab(browser: Browser) -> Iterator[Tab]:
    """A phone page with JavaScript off."""
    yield from watched_tab(browser, viewport=PHONE, java_script_enabled=False)


def create(shop: Shop, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{shop.url}/payments", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def press(target: Locator, screen: str) -> None:
    """Tap on a phone, click on a desktop."""
    if screen == "phone":
        target.tap()
    else:
        target.click()


def assert_within_first_screen(page: Page, *selectors: str) -> None:
    """Each element is in full view without scrolling, and nothing is wider than the screen."""
    viewport = page.viewport_size
    for selector in selectors:
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], selector
        assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], selector
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]


def test_an_email_only_order_is_paid_with_one_tap_and_nothing_typed_then_back_to_tiketq(
    shop: Shop, tiketq_orders: str, traveller: Tab, screen: str, lang: str, order_id
):
    payment = create(shop, transaction_service_payload(order_id))
    page = traveller.page

    page.goto(payment["payment_url"])

    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.locator("#total")).to_have_text("Rp 1.275.000")
    assert_within_first_screen(page, "#total", "#pay")
    expect(page.locator("input, textarea, select")).to_have_count(0)
    press(page.locator("#pay"), screen)
    frame = snap_frame(page)
    press(frame.locator("input[value=bca_va]"), screen)
    frame.locator("#outcome").select_option("settlement")
    press(frame.locator("#pay-button"), screen)
    expect(frame.locator("#result-title")).not_to_be_empty()
    press(frame.locator("#done"), screen)

    page.wait_for_url(f"**/receipt/{payment['id']}")
    expect(page.locator("#status-title")).to_have_text(PAID[lang], timeout=SETTLED)
    back = page.locator("#back")
    expect(back).to_have_text(BACK[lang])
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    press(back, screen)

    page.wait_for_url(f"{tiketq_orders}/orders/{order_id}")
    expect(page.locator("#order")).to_have_text(order_id)
    traveller.assert_clean()
    # What the caller sent went to Midtrans with the token, and nothing more was asked.
    sent = shop.simulator.transaction(order_id)["request"]["customer_details"]
    assert sent == {"email": "sari@example.co.id"}


def test_snaps_own_redirect_back_also_lands_on_tiketq(
    shop: Shop, tiketq_orders: str, tab: Tab, order_id
):
    payment = create(shop, transaction_service_payload(order_id))
    page = tab.page
    page.goto(payment["snap_redirect_url"])
    page.select_option("select[name=method]", "bca_va")
    page.select_option("select[name=outcome]", "settlement")
    page.click("button[type=submit]")

    page.click("text=Return to merchant")

    page.wait_for_url(f"{tiketq_orders}/orders/{order_id}")
    tab.assert_clean()


def test_copy_buttons_copy_each_code_and_say_so(shop: Shop, clipboard_tab: Tab, order_id):
    tab = clipboard_tab
    payment = shop.open_payment(order_id)
    page = tab.page
    page.goto(payment["payment_url"])
    pay_in_snap(page, "echannel", "pending")
    page.wait_for_url("**/receipt/**")
    expect(page.locator("#bill-key")).to_have_text(re.compile(r"^\d{12}$"), timeout=SETTLED)

    for target in ("biller-code", "bill-key"):
        page.locator(f"button[data-copy={target}]").tap()
        expect(page.locator(f"#{target}-copied")).to_have_text("Tersalin")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == page.locator(f"#{target}").inner_text()
    tab.assert_clean()


def test_without_javascript_the_codes_are_plain_text_and_no_copy_button_shows(
    shop: Shop, no_script_tab: Tab, order_id
):
    payment = shop.open_payment(order_id)
    shop.simulator.pay(order_id, "bca_va", "pending")
    requests.get(f"{shop.url}/checkout/{payment['id']}/status.json", timeout=10)
    page = no_script_tab.page

    page.goto(f"{shop.url}/receipt/{payment['id']}")

    expect(page.locator("#va-number")).to_have_text(re.compile(r"^\d{11}$"))
    button = page.locator("button[data-copy=va-number]")
    expect(button).to_have_count(1)
    expect(button).to_be_hidden()


def test_a_pending_qris_payment_shows_its_qr_code(shop: Shop, phone_tab: Tab, order_id):
    payment = shop.open_payment(order_id, payment_method="qris")
    page = phone_tab.page
    page.goto(payment["payment_url"])
    pay_in_snap(page, "other_qris", "pending")

    page.wait_for_url("**/receipt/**")

    qr = page.locator("#qr svg")
    expect(qr).to_be_visible(timeout=SETTLED)
    box = qr.bounding_box()
    assert 160 <= box["width"] <= 360 and box["width"] == pytest.approx(box["height"], abs=1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    phone_tab.assert_clean()


def test_a_pending_gopay_payment_shows_the_qr_image_and_on_a_phone_the_app_button(
    shop: Shop, tab: Tab, phone_tab: Tab, order_id
):
    payment = shop.open_payment(order_id, payment_method="e_wallet")
    tab.page.goto(payment["payment_url"])
    pay_in_snap(tab.page, "gopay", "pending")
    tab.page.wait_for_url("**/receipt/**")

    image = tab.page.locator("#qr-image")
    expect(image).to_be_visible(timeout=SETTLED)
    assert tab.page.evaluate("document.getElementById('qr-image').naturalWidth") > 0
    expect(tab.page.locator("#app-link")).to_be_hidden()
    phone_tab.page.goto(f"{shop.url}/receipt/{payment['id']}")
    app = phone_tab.page.locator("#app-link")
    expect(app).to_be_visible()
    expect(app).to_have_text("Bayar di aplikasi GoPay")
    app.tap()
    phone_tab.page.wait_for_url(re.compile(r"/snap/v4/redirection/"))
    tab.assert_clean()
    phone_tab.assert_clean()


def test_after_a_denied_card_one_tap_opens_snap_for_a_new_attempt_that_is_paid(
    shop: Shop, phone_tab: Tab, order_id
):
    body = transaction_service_payload(order_id)
    del body["payment_method"]
    payment = create(shop, body)
    page = phone_tab.page
    page.goto(payment["payment_url"])
    pay_in_snap(page, "credit_card", "deny")
    page.wait_for_url(f"**/receipt/{payment['id']}")
    expect(page.locator("#status-title")).to_have_text("Gagal")

    page.locator("#retry").tap()

    page.wait_for_url(re.compile(r"/checkout/(?!" + payment["id"] + r")[0-9a-f-]{36}"))
    expect(snap_frame(page).locator("#pay-button")).to_be_visible()
    choose_in_snap(page, "gopay", "settlement")
    page.wait_for_url("**/receipt/**")
    expect(page.locator("#status-title")).to_have_text("Lunas", timeout=SETTLED)
    assert shop.simulator.transaction(f"{order_id}~2")["transaction_status"] == "settlement"
    phone_tab.assert_clean()
