"""Core API routes (api.sandbox.midtrans.com/v2/...): status and transaction actions."""

import json
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from flask import Blueprint, Response, request

from . import lifecycle
from .guards import answer_call, has_server_key
from .payloads import action_body, refund_body
from .service import current_simulator
from .store import Refund, Transaction
from .validation import whole_number
from .wire import (
    CANNOT_MODIFY,
    INTERNAL_ERROR_MESSAGE,
    INVALID_REFUND_AMOUNT,
    core_not_found,
    core_unauthorized,
    json_response,
    utc_now,
)

bp = Blueprint("core", __name__, url_prefix="/v2")
R = TypeVar("R")


class _NotInCore(Exception):
    """The order only has a Snap token, so Core API does not know it yet."""


@bp.before_request
def _guard() -> Response | None:
    fault = answer_call(
        lambda status: json_response(
            {"status_code": str(status), "status_message": INTERNAL_ERROR_MESSAGE}, status
        )
    )
    if fault is not None:
        return fault
    return None if has_server_key() else core_unauthorized()


@bp.get("/<transaction_id>/status")
def status(transaction_id: str) -> Response:
    """Report a transaction by order_id or transaction_id."""
    simulator = current_simulator()
    txn = simulator.store.get(transaction_id)
    if txn is None or not txn.in_core:
        return core_not_found()
    return json_response(simulator.status_body(txn))


@bp.post("/<transaction_id>/cancel")
def cancel(transaction_id: str) -> Response:
    """Void a transaction that has not settled."""
    return _act(
        transaction_id,
        lambda txn: lifecycle.cancel(txn, utc_now()),
        "200",
        "Success, transaction is canceled",
    )


@bp.post("/<transaction_id>/expire")
def expire(transaction_id: str) -> Response:
    """Expire a pending transaction."""
    return _act(
        transaction_id,
        lambda txn: lifecycle.expire(txn, utc_now()),
        "407",
        "Success, transaction has expired",
    )


@bp.post("/<transaction_id>/approve")
def approve(transaction_id: str) -> Response:
    """Accept a card capture challenged by the fraud check."""
    return _act(
        transaction_id,
        lambda txn: lifecycle.review_challenge(txn, approve=True),
        "200",
        "Success, transaction is approved",
    )


@bp.post("/<transaction_id>/deny")
def deny(transaction_id: str) -> Response:
    """Reject a card capture challenged by the fraud check."""
    return _act(
        transaction_id,
        lambda txn: lifecycle.review_challenge(txn, approve=False),
        "200",
        "Success, transaction is denied",
    )


@bp.post("/<transaction_id>/refund")
def refund(transaction_id: str) -> Response:
    """Refund a settled transaction, fully or partly."""
    return _refund(transaction_id, "online")


@bp.post("/<transaction_id>/refund/online/direct")
def refund_direct(transaction_id: str) -> Response:
    """Refund a settled transaction straight through the bank or wallet."""
    return _refund(transaction_id, "direct")


def _act(
    transaction_id: str, step: Callable[[Transaction], None], code: str, message: str
) -> Response:
    """Apply a Core action and answer with Midtrans's success, 404 or 412 body."""
    simulator = current_simulator()
    try:
        updated = simulator.record_change(transaction_id, _in_core(step))
    except _NotInCore:
        return core_not_found()
    except lifecycle.IllegalMove:
        return json_response(CANNOT_MODIFY)
    if updated is None:
        return core_not_found()
    return json_response(
        action_body(updated.transaction, code, message, merchant_id=simulator.merchant_id)
    )


def _refund(transaction_id: str, method: Literal["online", "direct"]) -> Response:
    params = _json_object()
    errors: list[str] = []
    if params is None:
        errors.append("request body must be a JSON object")
        params = {}
    amount = params.get("amount")
    if amount is not None:
        amount = whole_number(amount, "amount", errors)
    refund_key = params.get("refund_key")
    if refund_key is not None and not (isinstance(refund_key, str) and refund_key):
        errors.append("refund_key must be a non-empty string")
    reason = params.get("reason")
    if reason is not None and not isinstance(reason, str):
        errors.append("reason must be a string")
    if errors:
        return json_response(
            {
                "status_code": "400",
                "status_message": "One or more parameters in the payload is invalid.",
                "validation_messages": errors,
            }
        )

    def step(txn: Transaction) -> Refund:
        return lifecycle.refund(
            txn, amount=amount, refund_key=refund_key, reason=reason, method=method, now=utc_now()
        )

    simulator = current_simulator()
    try:
        updated = simulator.record_change(transaction_id, _in_core(step))
    except _NotInCore:
        return core_not_found()
    except lifecycle.IllegalMove:
        return json_response(CANNOT_MODIFY)
    except lifecycle.InvalidAmount:
        return json_response(INVALID_REFUND_AMOUNT)
    if updated is None:
        return core_not_found()
    return json_response(
        refund_body(updated.transaction, updated.result, merchant_id=simulator.merchant_id)
    )


def _in_core(step: Callable[[Transaction], R]) -> Callable[[Transaction], R]:
    """Wrap `step` so that orders without a chosen payment method count as unknown."""

    def guarded(txn: Transaction) -> R:
        if not txn.in_core:
            raise _NotInCore(txn.order_id)
        return step(txn)

    return guarded


def _json_object() -> dict[str, Any] | None:
    """Return the request's JSON object; an empty body counts as `{}`, any non-object as None."""
    raw = request.get_data(as_text=True)
    if not raw.strip():
        return {}
    try:
        params = json.loads(raw)
    except ValueError:
        return None
    return params if isinstance(params, dict) else None
