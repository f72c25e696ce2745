"""Snap API routes (app.sandbox.midtrans.com/snap/...) and the payment page."""

import uuid

from flask import Blueprint, Response, redirect, request, url_for
from flask.typing import ResponseReturnValue

from . import lifecycle
from .checkout_page import render_checkout
from .guards import answer_call, has_server_key
from .notifier import header_urls
from .service import UnknownChoice, current_simulator
from .store import DuplicateOrderId, Transaction
from .validation import InvalidRequest, parse_snap_request
from .wire import (
    INTERNAL_ERROR_MESSAGE,
    SNAP_UNAUTHORIZED,
    iso_utc_millis,
    json_response,
    snap_errors,
    utc_now,
)

bp = Blueprint("snap", __name__, url_prefix="/snap")


@bp.before_request
def _apply_fault() -> Response | None:
    return answer_call(lambda status: snap_errors([INTERNAL_ERROR_MESSAGE], status))


@bp.post("/v1/transactions")
def create_transaction() -> Response:
    """Issue a Snap token for a valid, new order."""
    if not has_server_key():
        return snap_errors(SNAP_UNAUTHORIZED, 401)
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return snap_errors(["Request body must be a JSON object"])
    now = utc_now()
    try:
        order = parse_snap_request(body, now)
    except InvalidRequest as exc:
        return snap_errors(exc.messages)
    txn = Transaction(
        order_id=order.order_id,
        token=str(uuid.uuid4()),
        transaction_id=str(uuid.uuid4()),
        gross_amount=order.gross_amount,
        request=body,
        created_at=now,
        expiry_time=order.expiry_time,
        page_expiry_time=order.page_expiry_time,
        updated_at=now,
        override_notification_urls=header_urls(request.headers.get("X-Override-Notification")),
        append_notification_urls=header_urls(request.headers.get("X-Append-Notification")),
    )
    try:
        current_simulator().store.add(txn)
    except DuplicateOrderId:
        return snap_errors(["transaction_details.order_id has already been taken"])
    redirect_url = url_for(".checkout", token=txn.token, _external=True)
    return json_response({"token": txn.token, "redirect_url": redirect_url}, 201)


@bp.post("/v1/transactions/<token>/cancel")
def cancel_session(token: str) -> Response:
    """Cancel a Snap session so the traveller can no longer pay through it."""
    if not has_server_key():
        return snap_errors(SNAP_UNAUTHORIZED, 401)
    try:
        updated = current_simulator().record_change(
            token, lambda txn: lifecycle.cancel_snap_session(txn, utc_now()), by="token"
        )
    except lifecycle.IllegalMove as exc:
        return snap_errors([str(exc)])
    if updated is None:
        return snap_errors(["token not found"], 404)
    assert updated.transaction.snap_canceled_at is not None
    return json_response({"canceled_at": iso_utc_millis(updated.transaction.snap_canceled_at)})


@bp.route("/v4/redirection/<token>", methods=["GET", "POST"])
def checkout(token: str) -> ResponseReturnValue:
    """Show the payment page; a submitted form pays with the chosen method and outcome."""
    simulator = current_simulator()
    txn = simulator.store.get(token, by="token")
    if txn is None:
        return "Payment page not found", 404
    if request.method == "GET":
        return render_checkout(txn)
    if utc_now() >= txn.page_expiry_time:
        return render_checkout(txn, message="This payment page has expired."), 410
    try:
        updated = simulator.pay(
            token, request.form.get("method", ""), request.form.get("outcome", ""), by="token"
        )
    except UnknownChoice as exc:
        return render_checkout(txn, message=str(exc)), 400
    except lifecycle.IllegalMove as exc:
        return render_checkout(txn, message=f"Payment refused: {exc}"), 409
    if updated is None:
        return "Payment page not found", 404
    # Post/redirect/get, so reloading the result page does not pay again.
    return redirect(url_for(".checkout", token=token), 303)
