"""The ops pages in headless Chromium: sign in, find a payment, read its history."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.browser import Tab
from tests.support.ops_day import seed
from tests.support.servers import serve_in_thread
from tests.support.staff import PASSWORD, STAFF
from tiketq.extensions import db
from tiketq.ops import limiter
from tiketq.payments.models import utcnow

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """docs/screenshots when UPDATE_SCREENSHOTS=1 (to refresh the README's), else a temp dir."""
    return DOCS_SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path


@pytest.fixture
def ops(committed) -> Iterator[tuple[str, dict]]:
    """The service on loopback with one member of staff and a seeded day of payments."""
    app = committed(OPS_USERS=[STAFF])
    limiter.reset()
    with app.app_context():
        payments = seed(utcnow())
        orders = {label: (p.order_id, str(p.id)) for label, p in payments.items()}
        db.session.remove()
    url, server = serve_in_thread(app)
    yield url, orders
    server.shutdown()


def test_staff_sign_in_find_a_payment_and_read_its_history(ops, tab: Tab, screenshots: Path):
    url, orders = ops
    page = tab.page
    page.goto(f"{url}/ops")
    page.wait_for_url("**/ops/login?next=/ops")
    expect(page.locator("#environment")).to_contain_text("SIMULATOR")
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    page.click("button.primary")

    page.wait_for_url(f"{url}/ops")
    expect(page.locator("h1")).to_have_text("Operations")
    expect(page.locator("#stuck-count")).not_to_have_text("0")
    expect(page.locator("#review-count")).to_have_text("4")
    expect(page.locator("#hourly-chart-title")).to_have_count(1)
    screenshots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshots / "ops-dashboard.png"), full_page=True)

    order_id, payment_id = orders["H"]
    page.fill("#q", order_id)
    page.press("#q", "Enter")

    page.wait_for_url(f"{url}/ops/payments/{payment_id}")
    expect(page.locator("#order-id")).to_have_text(order_id)
    events = page.locator("#history tr.event")
    expect(events).to_have_count(3)
    expect(events.nth(2)).to_contain_text("refunded")
    page.locator("#history a[href^='#notification-']").last.click()
    notification = page.locator(".notification:target")
    expect(notification).to_contain_text("refund")
    notification.locator("summary").click()
    expect(notification.locator("pre.raw")).to_contain_text('"transaction_status": "refund"')
    page.screenshot(path=str(screenshots / "ops-payment.png"), full_page=True)
    tab.assert_clean()


def test_a_wrong_password_in_the_browser_stays_on_the_login(ops, tab: Tab):
    url, _ = ops
    page = tab.page
    page.goto(f"{url}/ops/login")
    page.fill("#name", "alice")
    page.fill("#password", "not the password")
    page.click("button.primary")
    expect(page.locator("#login-refused")).to_have_text("Wrong name or password.")
    expect(page.locator("#password")).to_have_value("")
    assert page.url == f"{url}/ops/login"
    # The refused answer is a 401; Chromium reports that as a console error, which is expected.
    assert all("401" in error for error in tab.console_errors)
    assert tab.csp_violations == [] and tab.dialogs == []
