"""Request guards shared by the Snap and Core routes: call counting, server-key auth, faults."""

import hmac
import json
import time
from collections.abc import Callable

from flask import Response, request

from .service import current_simulator

# Operation names by "<blueprint>.<view>"; control routes and snap.js are neither counted nor
# faulted, since they are not the Midtrans APIs the service under test calls.
OPERATIONS = {
    "snap.create_transaction": "snap.create",
    "snap.cancel_session": "snap.cancel",
    "snap.checkout": "snap.checkout",
    "core.status": "core.status",
    "core.cancel": "core.cancel",
    "core.expire": "core.expire",
    "core.approve": "core.approve",
    "core.deny": "core.deny",
    "core.refund": "core.refund",
    "core.refund_direct": "core.refund_direct",
}
OPERATION_NAMES = frozenset(OPERATIONS.values())


def has_server_key() -> bool:
    """Whether the request carries Basic auth with the configured server key and no password."""
    auth = request.authorization
    if auth is None or auth.type != "basic" or auth.password:
        return False
    expected = current_simulator().server_key.encode("utf-8")
    return hmac.compare_digest((auth.username or "").encode("utf-8"), expected)


def answer_call(default_body: Callable[[int], Response]) -> Response | None:
    """Count the request as a call of its operation, then apply a fault aimed at it, if any."""
    operation = current_operation()
    if operation is None:
        return None  # no route matched: Flask answers 404 and Midtrans would never see it
    simulator = current_simulator()
    # Counted before any fault or auth check, so faulted and refused calls show up too.
    simulator.store.count_call(operation, _call_key(operation))
    return injected_fault(operation, default_body)


def current_operation() -> str | None:
    """Return the operation name of the matched Snap or Core route, if any."""
    if request.endpoint is None:
        return None
    return OPERATIONS.get(".".join(request.endpoint.split(".")[-2:]))


def injected_fault(operation: str, default_body: Callable[[int], Response]) -> Response | None:
    """Apply the active fault: sleep, then return the faulty response if the fault sets a status."""
    fault = current_simulator().store.take_fault(operation)
    if fault is None:
        return None
    if fault.delay_seconds:
        time.sleep(fault.delay_seconds)
    if fault.status is None:
        return None
    if fault.body is None:
        return default_body(fault.status)
    return Response(fault.body, status=fault.status, mimetype=_guess_mimetype(fault.body))


def _call_key(operation: str) -> str:
    if operation != "snap.create":
        args = request.view_args or {}
        return str(args.get("transaction_id", args.get("token", "")))
    # The one call without an id in its path; the order_id it asks for is what tests look for.
    body = request.get_json(force=True, silent=True)
    details = body.get("transaction_details") if isinstance(body, dict) else None
    order_id = details.get("order_id") if isinstance(details, dict) else None
    return order_id if isinstance(order_id, str) else ""


def _guess_mimetype(body: str) -> str:
    # A fault body is either a JSON error or something a proxy would send, such as an HTML 502 page.
    try:
        json.loads(body)
    except ValueError:
        return "text/html"
    return "application/json"
