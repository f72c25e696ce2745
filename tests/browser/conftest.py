"""Browser fixtures: Debian's headless Chromium driven by Playwright, against the served app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

import midtrans_simulator as simulator
from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    DESKTOP,
    PHONE,
    Shop,
    Tab,
    watched_tab,
)
from tests.support.config import CLIENT_KEY, SERVER_KEY
from tests.support.inbox_worker import inbox_worker
from tests.support.servers import serve_in_thread
from tests.support.simulator import Simulator
from tiketq.gateway import EXTENSION_KEY
from tiketq.gateway.midtrans import MidtransGateway

HERE = Path(__file__).parent


# First, so that the marks are there when -m deselects by them.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/browser/ `browser`; the hook sees the whole run's tests."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Chromium for the browser tests, closed after them; a missing one fails here."""
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


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
