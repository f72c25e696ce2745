"""The ops pages on a 360×740 phone: no table, figure or heading is wider than the screen."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import PHONE, SARI, Tab, sign_in
from tests.support.ops_day import seed
from tests.support.servers import serve_in_thread
from tests.support.staff import STAFF
from tiketq.extensions import db
from tiketq.ops import limiter
from tiketq.payments import heartbeats
from tiketq.payments.models import utcnow

# Elements reaching past the viewport's edges with no scrolling box (other than the page) to
# hold them: what makes a phone pan sideways. Answers "tag#id.class" for each.
OVERFLOWING = """
() => {
  const width = document.documentElement.clientWidth;
  const contained = (element) => {
    for (let box = element.parentElement; box && box !== document.body; box = box.parentElement) {
      if (["auto", "scroll", "hidden"].includes(getComputedStyle(box).overflowX)) return true;
    }
    return false;
  };
  return [...document.body.querySelectorAll("*")]
    .filter((element) => {
      const box = element.getBoundingClientRect();
      return box.width > 0 && (box.right > width + 0.5 || box.left < -0.5) && !contained(element);
    })
    .map((element) => `${element.tagName.toLowerCase()}#${element.id}.${element.className}`);
}
"""


@pytest.fixture
def ops_day(committed) -> Iterator[tuple[str, str]]:
    """The service on loopback with a seeded day; answers its URL and a paid payment's id."""
    app = committed(OPS_USERS=[STAFF])
    limiter.reset()
    with app.app_context():
        paid = seed(utcnow())["H"]
        paid.customer = {**SARI, "last_name": "Kusumawardhani"}
        paid.description = "Payment for order " + paid.order_id
        # Worker ids are hostname:pid; a cloud hostname is long.
        long_id = "ip-10-0-12-34.ap-southeast-3.compute.internal:123456"
        heartbeats.record_heartbeat(long_id, {"applied": 12, "delivered": 40}, now=utcnow())
        payment_id = str(paid.id)
        db.session.commit()
        db.session.remove()
    url, server = serve_in_thread(app)
    yield url, payment_id
    server.shutdown()


def assert_fits(page: Page) -> None:
    """Nothing on the page is wider than the phone's screen."""
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.evaluate(OVERFLOWING) == []


def test_the_dashboard_and_a_payment_fit_a_phone(ops_day, phone_tab: Tab):
    url, payment_id = ops_day
    page = phone_tab.page
    sign_in(page, url)
    expect(page.locator("#by-method tbody tr")).not_to_have_count(0)
    expect(page.locator("#stuck tbody tr")).not_to_have_count(0)
    assert_fits(page)
    page.locator(".chart-data summary").click()
    assert_fits(page)

    page.goto(f"{url}/ops/payments/{payment_id}")
    expect(page.locator("#customer")).to_contain_text("First name")
    expect(page.locator("#history tr.event")).to_have_count(3)
    assert_fits(page)
    for summary in page.locator(".notification summary").all():
        summary.click()
    assert_fits(page)
    phone_tab.assert_clean()
