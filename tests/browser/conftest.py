"""Browser fixtures: Debian's headless Chromium driven by Playwright, against the served app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from flask import Flask
from playwright.sync_api import Browser, Page, sync_playwright

import midtrans_simulator as simulator
from tests.conftest import CLIENT_KEY, SERVER_KEY, Simulator, serve_in_thread
from tests.inbox_worker import inbox_worker
from tiketq.gateway import EXTENSION_KEY
from tiketq.gateway.midtrans import MidtransGateway

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


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Chromium for the browser tests, closed after them; a missing one fails here."""
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


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


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    """A desktop-sized page."""
    yield from watched_tab(browser, viewport=DESKTOP)


@pytest.fixture
def phone_tab(browser: Browser) -> Iterator[Tab]:
    """A 360-px wide phone page with touch."""
    yield from watched_tab(
        browser, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2
    )


@pytest.fixture
def shop(committed, tmp_path) -> Iterator[Shop]:
    """The service on loopback with real commits, paying through its own notifying simulator.

    The notification URL only stores; a worker thread applies, as the worker process does.
    """
    app = committed()
    url, server = serve_in_thread(app)
    # The addresses the service hands out (payment_url, Snap's finish URL) are where it is served.
    app.config["PUBLIC_BASE_URL"] = url
    sim_app = simulator.create_app(
        server_key=SERVER_KEY,
        state_path=str(tmp_path / "simulator.sqlite3"),
        notification_url=f"{url}/payments/webhook",
        time_scale=0.001,
    )
    sim_url, sim_server = serve_in_thread(sim_app)
    # The service and the checkout page's snap.js both use this simulator, not the session's.
    app.config["MIDTRANS_BASE_URL"] = sim_url
    app.extensions[EXTENSION_KEY] = MidtransGateway(
        server_key=SERVER_KEY,
        client_key=CLIENT_KEY,
        is_production=False,
        base_url=sim_url,
        timeout=(2.0, 5.0),
    )
    with inbox_worker(app):
        yield Shop(url, Simulator(sim_url), app)
    server.shutdown()
    sim_server.shutdown()
