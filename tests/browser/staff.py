"""Signing in to the ops pages in a browser, as the member of staff the ops tests configure."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.test_ops_page import PASSWORD


def sign_in(page: Page, url: str) -> None:
    """Sign in as alice and land on the dashboard."""
    page.goto(f"{url}/ops/login")
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    page.click("button.primary")
    page.wait_for_url(f"{url}/ops")
