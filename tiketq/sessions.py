"""The signed-cookie session, not opened for the machine endpoints."""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class PageSessionInterface(SecureCookieSessionInterface):
    """Flask's cookie session, except under the given path prefixes, which get a null session.

    The JSON API and the notification URL never read the cookie: not opening it spares every
    machine call a signature check, and a write to it there fails loudly instead of setting a
    cookie nobody reads. Prefixes, not blueprints: the session opens before the URL is matched.
    """

    def __init__(self, sessionless_prefixes: Iterable[str]) -> None:
        self.sessionless_prefixes = tuple(sessionless_prefixes)

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """The request's session, or a null one under a sessionless prefix."""
        if request.path.startswith(self.sessionless_prefixes):
            return self.make_null_session(app)
        return super().open_session(app, request)
