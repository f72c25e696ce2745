"""Request guards: call counting, server-key auth and faults for Snap and Core; loopback control."""

import hmac
import ipaddress
import json
import re
import time
from collections.abc import Callable

from flask import Response, request

from .service import current_simulator
from .wire import control_error

# The client addresses in a Forwarded header (RFC 7239): for=1.2.3.4, for="[::1]:80", for=unknown.
_FORWARDED_FOR = re.compile(r'(?i)(?:^|[;,\s])for=("[^"]*"|[^;,\s]*)')

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


def loopback_only() -> Response | None:
    """Refuse a control API call with 403 unless it comes from this machine, not via a proxy."""
    # The control API can list customers and mark any order paid, and it has no auth of its own.
    for address in _claimed_clients():
        if not _is_loopback(address):
            return control_error(
                "the simulator's control API answers loopback clients only (127.0.0.0/8, ::1); "
                f"this request came from {address or 'an unknown address'}",
                403,
            )
    return None


def _claimed_clients() -> list[str]:
    """The peer (the forwarded client under PROXY_FIX_HOPS) and every client a proxy names."""
    # A proxy on this machine that PROXY_FIX_HOPS does not declare makes every peer loopback;
    # the addresses it forwards for are what say whether the caller is local.
    named = request.headers.get("X-Forwarded-For", "").split(",")
    named.append(request.headers.get("X-Real-IP", ""))
    named += _FORWARDED_FOR.findall(request.headers.get("Forwarded", ""))
    return [request.remote_addr or "", *(_host(token) for token in named if token.strip())]


def _host(token: str) -> str:
    """The address in a forwarding header's entry, without quotes, brackets or port."""
    token = token.strip().strip('"')
    if token.startswith("["):
        return token[1:].partition("]")[0]
    # One colon is IPv4 with a port; more is a bare IPv6 address.
    return token.partition(":")[0] if token.count(":") == 1 else token


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # "unknown", an obfuscated name, or nothing at all
    # Python 3.11 does not call ::ffff:127.0.0.1 loopback; a dual-stack socket reports it so.
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback
