"""Credentials for privileged API calls: keys from configuration, compared in constant time."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, request

from tiketq.errors import json_error
from tiketq.metrics import AUTH_FAILURES

log = logging.getLogger(__name__)
EXTENSION_KEY = "tiketq.admin_key_hashes"
F = TypeVar("F", bound=Callable[..., Any])


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def init_app(app: Flask) -> None:
    """Keep only hashes of the configured keys."""
    app.extensions[EXTENSION_KEY] = [_digest(key) for key in app.config["ADMIN_API_KEYS"]]


def _presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-API-Key") or None


def is_authorised(key: str | None) -> bool:
    """Tell whether `key` is one of the configured keys, without an early exit on a match."""
    if not key:
        return False
    presented = _digest(key)
    matches = [
        hmac.compare_digest(presented, known) for known in current_app.extensions[EXTENSION_KEY]
    ]
    return any(matches)


def require_admin(view: F) -> F:
    """Refuse the view with 401 unless the request carries a configured API key."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        presented = _presented_key()
        if not is_authorised(presented):
            AUTH_FAILURES.labels("missing" if presented is None else "wrong").inc()
            log.warning("refused privileged call", extra={"path": request.path})
            response = json_error(401, "credentials required: Authorization: Bearer <API key>")
            response.headers["WWW-Authenticate"] = 'Bearer realm="tiketq-payments"'
            return response
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]
