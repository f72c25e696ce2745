"""Control API for HTTP notifications: inspect deliveries, bend delivery, wait, replay."""

import time
from typing import Any

from flask import Blueprint, Response, request

from . import lifecycle
from .guards import loopback_only
from .outbox import Mode
from .service import current_simulator
from .wire import control_error, json_response

bp = Blueprint("notification_control", __name__, url_prefix="/control")
# Unauthenticated, it shows signed notifications and replays them: only this machine may.
bp.before_request(loopback_only)

MAX_DUPLICATES = 10
MAX_DRAIN_SECONDS = 60.0
DEFAULT_DRAIN_SECONDS = 5.0
_MODE_FIELDS = frozenset(("duplicates", "reverse", "hold"))


@bp.get("/notifications")
def list_notifications() -> Response:
    """List deliveries, oldest first, with bodies and attempt history; `?order_id=` filters."""
    outbox = current_simulator().notifier.outbox
    deliveries = outbox.deliveries(request.args.get("order_id"))
    return json_response([delivery.to_json() for delivery in deliveries])


@bp.get("/notifications/mode")
def show_mode() -> Response:
    """Show the delivery mode."""
    return json_response(current_simulator().notifier.outbox.mode().to_json())


@bp.post("/notifications/mode")
def set_mode() -> Response:
    """Send extra copies, deliver newest first, or hold notifications until released."""
    params = request.get_json(force=True, silent=True)
    if not isinstance(params, dict):
        return control_error("body must be a JSON object", 400)
    try:
        mode = _parse_mode(params)
    except ValueError as exc:
        return control_error(str(exc), 400)
    current_simulator().notifier.outbox.set_mode(mode)
    return json_response(mode.to_json())


@bp.delete("/notifications/mode")
def reset_mode() -> Response:
    """Deliver normally again; notifications already held wait for a release."""
    current_simulator().notifier.outbox.set_mode(Mode())
    return Response(status=204)


@bp.post("/notifications/release")
def release() -> Response:
    """Send the held notifications, newest first when the mode says reverse."""
    notifier = current_simulator().notifier
    released = notifier.outbox.release(now=time.time())
    notifier.wake()
    return json_response([delivery.to_json() for delivery in released])


@bp.post("/notifications/drain")
def drain() -> Response:
    """Wait until no pending delivery falls due within `timeout` seconds (504 if one still does).

    An optional `order_id` limits both the wait and the deliveries listed in the answer.
    """
    params = request.get_json(force=True, silent=True)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return control_error("body must be a JSON object", 400)
    timeout = params.get("timeout", DEFAULT_DRAIN_SECONDS)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 <= timeout <= MAX_DRAIN_SECONDS
    ):
        return control_error(f"timeout must be between 0 and {MAX_DRAIN_SECONDS:g} seconds", 400)
    order_id = params.get("order_id")
    if order_id is not None and not isinstance(order_id, str):
        return control_error("order_id must be a string", 400)
    notifier = current_simulator().notifier
    settled = notifier.drain(timeout=float(timeout), order_id=order_id)
    deliveries = notifier.outbox.deliveries(order_id)
    return json_response([delivery.to_json() for delivery in deliveries], 200 if settled else 504)


@bp.post("/transactions/<order_id>/notify")
def notify_again(order_id: str) -> Response:
    """Send the notification of the transaction's current state again."""
    try:
        queued = current_simulator().notify_again(order_id)
    except lifecycle.IllegalMove as exc:
        return control_error(str(exc), 409)
    if queued is None:
        return control_error(f"transaction {order_id} not found", 404)
    return json_response([delivery.to_json() for delivery in queued], 202)


@bp.get("/transactions/<order_id>/notification")
def show_notification(order_id: str) -> Response:
    """Show the signed notification body Midtrans would send now, without sending it."""
    simulator = current_simulator()
    txn = simulator.store.get(order_id)
    if txn is None:
        return control_error(f"transaction {order_id} not found", 404)
    if not txn.in_core:
        return control_error("no payment method has been chosen yet", 409)
    return json_response(simulator.notification_body(txn))


def _parse_mode(params: dict[str, Any]) -> Mode:
    unknown = sorted(set(params) - _MODE_FIELDS)
    if unknown:
        raise ValueError(f"unknown mode fields: {', '.join(unknown)}")
    duplicates = params.get("duplicates", 0)
    if (
        isinstance(duplicates, bool)
        or not isinstance(duplicates, int)
        or not 0 <= duplicates <= MAX_DUPLICATES
    ):
        raise ValueError(f"duplicates must be an integer from 0 to {MAX_DUPLICATES}")
    reverse, hold = params.get("reverse", False), params.get("hold", False)
    if not isinstance(reverse, bool) or not isinstance(hold, bool):
        raise ValueError("reverse and hold must be booleans")
    return Mode(duplicates=duplicates, reverse=reverse, hold=hold)
