"""Control API for tests and demos: drive payments, inject faults (loopback only, no auth)."""

from typing import Any

from flask import Blueprint, Response, request

from . import lifecycle
from .guards import OPERATION_NAMES, loopback_only
from .service import UnknownChoice, current_simulator
from .store import Fault
from .validation import whole_number
from .wire import control_error, json_response, utc_now

bp = Blueprint("control", __name__, url_prefix="/control")
# Anyone who reaches it could mark orders paid: only this machine may.
bp.before_request(loopback_only)

_FAULT_FIELDS = frozenset(("delay_seconds", "status", "body", "times", "operations"))


@bp.get("/transactions")
def list_transactions() -> Response:
    """List every transaction's internal state, newest first."""
    return json_response([txn.to_json() for txn in current_simulator().store.all()])


@bp.get("/transactions/<order_id>")
def show_transaction(order_id: str) -> Response:
    """Show one transaction's internal state, including its token, request body and refunds."""
    txn = current_simulator().store.get(order_id)
    if txn is None:
        return control_error(f"transaction {order_id} not found", 404)
    return json_response(txn.to_json())


@bp.post("/transactions/<order_id>/pay")
def pay(order_id: str) -> Response:
    """Act as the traveller: choose a method in Snap and let the payment reach an outcome.

    An optional `customer_fee` adds a fee to what is paid, as Automatic Fee Imposition does.
    """
    params = request.get_json(force=True, silent=True)
    if not isinstance(params, dict):
        return control_error("body must be a JSON object with method and outcome", 400)
    method, outcome = params.get("method"), params.get("outcome")
    if not isinstance(method, str) or not isinstance(outcome, str):
        return control_error("method and outcome must be strings", 400)
    errors: list[str] = []
    fee = params.get("customer_fee")
    if fee is not None:
        fee = whole_number(fee, "customer_fee", errors)
        if fee is not None and fee < 0:
            errors.append("customer_fee must not be negative")
    if errors:
        return control_error("; ".join(errors), 400)
    simulator = current_simulator()
    try:
        updated = simulator.pay(order_id, method, outcome, customer_fee=fee)
    except UnknownChoice as exc:
        return control_error(str(exc), 400)
    except lifecycle.IllegalMove as exc:
        return control_error(str(exc), 409)
    if updated is None:
        return control_error(f"transaction {order_id} not found", 404)
    return json_response(simulator.status_body(updated.transaction))


@bp.post("/transactions/<order_id>/transition")
def transition(order_id: str) -> Response:
    """Move a transaction along Midtrans's status cycle, e.g. pending to settlement."""
    params = request.get_json(force=True, silent=True)
    if not isinstance(params, dict):
        return control_error("body must be a JSON object with transaction_status", 400)
    target = params.get("transaction_status")
    if target not in lifecycle.TRANSITION_TARGETS:
        return control_error(f"unknown transaction_status: {target}", 400)
    errors: list[str] = []
    amount = (
        None if params.get("amount") is None else whole_number(params["amount"], "amount", errors)
    )
    if errors:
        return control_error("; ".join(errors), 400)
    simulator = current_simulator()
    try:
        updated = simulator.record_change(
            order_id, lambda txn: lifecycle.transition(txn, target, utc_now(), amount=amount)
        )
    except lifecycle.IllegalMove as exc:
        return control_error(str(exc), 409)
    except lifecycle.InvalidAmount as exc:
        return control_error(str(exc), 400)
    if updated is None:
        return control_error(f"transaction {order_id} not found", 404)
    return json_response(simulator.status_body(updated.transaction))


@bp.get("/faults")
def show_fault() -> Response:
    """Show the active fault, if any."""
    return json_response({"fault": _fault_json(current_simulator().store.current_fault())})


@bp.post("/faults")
def set_fault() -> Response:
    """Make Snap and Core routes slow down and/or fail until cleared or used up.

    An optional `operations` list, e.g. `["core.status"]`, aims the fault at those operations
    only; the others neither feel it nor use up its `times`.
    """
    params = request.get_json(force=True, silent=True)
    if not isinstance(params, dict):
        return control_error("body must be a JSON object", 400)
    try:
        fault = _parse_fault(params)
    except ValueError as exc:
        return control_error(str(exc), 400)
    current_simulator().store.set_fault(fault)
    return json_response({"fault": _fault_json(fault)})


@bp.delete("/faults")
def clear_fault() -> Response:
    """Stop injecting faults."""
    current_simulator().store.clear_fault()
    return Response(status=204)


@bp.get("/calls")
def list_calls() -> Response:
    """Count the Snap and Core calls answered, by operation and path id; filter by either."""
    counts = current_simulator().store.calls(
        operation=request.args.get("operation"), key=request.args.get("key")
    )
    return json_response(
        {
            "calls": [{"operation": c.operation, "key": c.key, "count": c.count} for c in counts],
            "total": sum(c.count for c in counts),
        }
    )


@bp.delete("/calls")
def reset_calls() -> Response:
    """Start counting calls from zero."""
    current_simulator().store.reset_calls()
    return Response(status=204)


def _parse_fault(params: dict[str, Any]) -> Fault:
    unknown = sorted(set(params) - _FAULT_FIELDS)
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
    delay = params.get("delay_seconds", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise ValueError("delay_seconds must be a non-negative number")
    status = params.get("status")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
    ):
        raise ValueError("status must be an HTTP status code or null")
    body = params.get("body")
    if body is not None and not isinstance(body, str):
        raise ValueError("body must be a string or null")
    times = params.get("times")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ValueError("times must be a positive integer or null")
    return Fault(
        delay_seconds=float(delay),
        status=status,
        body=body,
        times=times,
        operations=_parse_operations(params.get("operations")),
    )


def _parse_operations(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError("operations must be a non-empty list of operation names or null")
    unknown = sorted(set(value) - OPERATION_NAMES)
    if unknown:
        # A misspelt name would otherwise aim the fault at nothing, silently.
        raise ValueError(f"unknown operations: {', '.join(unknown)}")
    return tuple(dict.fromkeys(value))


def _fault_json(fault: Fault | None) -> dict[str, Any] | None:
    if fault is None:
        return None
    return {
        "delay_seconds": fault.delay_seconds,
        "status": fault.status,
        "body": fault.body,
        "times": fault.times,
        "operations": None if fault.operations is None else list(fault.operations),
    }
