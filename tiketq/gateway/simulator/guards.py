"""Request guards shared by the Snap and Core routes: server-key auth and injected faults."""

import hmac
import json
import time
from collections.abc import Callable

from flask import Response, request

from .service import current_simulator


def has_server_key() -> bool:
    """Whether the request carries Basic auth with the configured server key and no password."""
    auth = request.authorization
    if auth is None or auth.type != "basic" or auth.password:
        return False
    expected = current_simulator().server_key.encode("utf-8")
    return hmac.compare_digest((auth.username or "").encode("utf-8"), expected)


def injected_fault(default_body: Callable[[int], Response]) -> Response | None:
    """Apply the active fault: sleep, then return the faulty response if the fault sets a status."""
    fault = current_simulator().store.take_fault()
    if fault is None:
        return None
    if fault.delay_seconds:
        time.sleep(fault.delay_seconds)
    if fault.status is None:
        return None
    if fault.body is None:
        return default_body(fault.status)
    return Response(fault.body, status=fault.status, mimetype=_guess_mimetype(fault.body))


def _guess_mimetype(body: str) -> str:
    # A fault body is either a JSON error or something a proxy would send, such as an HTML 502 page.
    try:
        json.loads(body)
    except ValueError:
        return "text/html"
    return "application/json"
