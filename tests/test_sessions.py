"""The cookie session opens for the pages and not for the machine endpoints."""

from __future__ import annotations

import pytest
from flask import Flask, request
from flask.sessions import NullSession


@pytest.mark.parametrize("path", ["/payments", "/payments/webhook", "/webhook/midtrans"])
def test_the_api_and_the_notification_url_get_no_session(app: Flask, path: str) -> None:
    with app.test_request_context(path, method="POST"):
        assert isinstance(app.session_interface.open_session(app, request), NullSession)


@pytest.mark.parametrize("path", ["/checkout/some-payment", "/ops/login", "/receipt/some-payment"])
def test_pages_get_the_signed_cookie_session(app: Flask, path: str) -> None:
    with app.test_request_context(path):
        assert not isinstance(app.session_interface.open_session(app, request), NullSession)
