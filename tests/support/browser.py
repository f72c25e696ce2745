"""Browser helpers: Debian's Chromium, the viewports, watched pages, the shop and paying in Snap."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from tests.support.simulator import Simulator
from tests.support.staff import PASSWORD

# .ci/run installs Debian's chromium; Playwright's own browser download is never used.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
SARI = {"first_name": "Sari Dewi", "email": "sari@example.co.id", "phone": "+62 812 3456 7890"}
# Generous: a notification is a thread hop away, the worker applies it on its next round, and the
# receipt asks every 3 seconds. What to pay with (a VA number, a bill key) arrives the same way.
SETTLED = 20_000

# Runs in every frame before its scripts: reports each CSP violation to the test.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(`${event.violatedDirective} ${event.blockedURI} ${event.sourceFile}`);
});
"""


@dataclass
class Shop:
    """The service served over HTTP, with a Midtrans simulator that notifies it."""

    url: str
    simulator: Simulator
    app: Flask

    def open_payment(self, order_id: str, **fields: Any) -> dict[str, Any]:
        """Create a payment the way the transaction service does."""
        body = {
            "order_id": order_id,
            "amount": 1_250_000,
            "customer_details": SARI,
            "item_details": [
                {"id": "CGK-DPS", "name": "CGK - DPS GA-404", "price": 1_200_000, "quantity": 1},
                {"id": "BAG", "name": "Baggage 20 kg", "price": 25_000, "quantity": 2},
            ],
            **fields,
        }
        response = requests.post(f"{self.url}/payments", json=body, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()


@dataclass
class Tab:
    """A browser page that remembers every CSP violation, console error and dialog it met."""

    page: Page
    csp_violations: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """Nothing was blocked, nothing failed, no script opened a dialog."""
        assert self.csp_violations == []
        assert self.console_errors == []
        assert self.dialogs == []


def watched_tab(browser: Browser, locale: str = "id-ID", **context_options: Any) -> Iterator[Tab]:
    """A fresh browser context and page of a traveller in Indonesia, watched for problems."""
    context = browser.new_context(locale=locale, timezone_id="Asia/Jakarta", **context_options)
    tab = Tab(context.new_page())
    context.expose_binding(
        "reportCspViolation", lambda _source, violation: tab.csp_violations.append(violation)
    )
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    tab.page.on(
        "console",
        lambda message: message.type == "error" and tab.console_errors.append(message.text),
    )
    tab.page.on("pageerror", lambda error: tab.console_errors.append(str(error)))
    tab.page.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    yield tab
    context.close()


def sign_in(page: Page, url: str) -> None:
    """Sign in as alice and land on the dashboard."""
    page.goto(f"{url}/ops/login")
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(f"{url}/ops")


def snap_frame(page: Page):
    """The simulator's Snap window open over the page."""
    return page.frame_locator("iframe[title^='Midtrans Snap']")


def pay_in_snap(page: Page, method: str, outcome: str | None = None) -> str:
    """Open Snap from the checkout page, pay, and return what the popup showed."""
    page.click("#pay")
    return choose_in_snap(page, method, outcome)


def choose_in_snap(page: Page, method: str, outcome: str | None = None) -> str:
    """Pay in the Snap window open over the page, and return what it showed."""
    frame = snap_frame(page)
    frame.locator(f"input[value={method}]").check()
    if outcome:
        frame.locator("#outcome").select_option(outcome)
    frame.locator("#pay-button").click()
    expect(frame.locator("#result-title")).not_to_be_empty()
    shown = frame.locator("#result-details").inner_text()
    frame.locator("#done").click()
    return shown
