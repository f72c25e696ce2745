"""Blueprint: the JSON API under /payments for the API gateway and the transaction service."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, request
from pydantic import BaseModel, TypeAdapter, ValidationError

from tiketq.auth import authenticate, presents_key, request_key, require_admin
from tiketq.checkout import checkout_url, finish_url
from tiketq.checkout.addresses import ReturnRules
from tiketq.errors import json_error
from tiketq.gateway import (
    GatewayAuthError,
    GatewayError,
    GatewayRejected,
    GatewayTimeout,
    current_gateway,
)
from tiketq.openapi import Alias, Link, Operation
from tiketq.payments import queries, reconcile, service
from tiketq.payments.errors import (
    IdempotencyKeyReused,
    InvalidOrder,
    InvalidTransition,
    PaymentConflict,
    PaymentError,
    PaymentNotFound,
)
from tiketq.payments.models import Payment
from tiketq.payments.orders import CALLER_ORDER_ID_PATTERN
from tiketq.schemas import (
    CancelRequest,
    PaymentCreate,
    PaymentOut,
    PaymentStatusOut,
    RefundCreate,
    RefundOut,
    validation_errors,
)

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/payments")
M = TypeVar("M", bound=BaseModel)

_PAYMENT_LIST = TypeAdapter(list[PaymentOut])
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

_DOMAIN_STATUS: dict[type[PaymentError], int] = {
    PaymentNotFound: 404,
    InvalidOrder: 400,
    PaymentConflict: 409,
    InvalidTransition: 409,
    IdempotencyKeyReused: 422,
}

_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    # Flask's default converter takes any text up to the next slash.
    "payment_id": {
        "type": "string",
        "pattern": "^[^/]+$",
        "description": "the payment's UUID, or a legacy `payment-<order_id>` (its latest attempt)",
    },
    "order_id": {"type": "string", "pattern": CALLER_ORDER_ID_PATTERN},
}
# 401 too without keys required: a key that is given is checked.
_CREATE_ERRORS = (400, 401, 409, 413, 415, 422, 502, 503, 504)
_STAFF_ERRORS = (400, 404, 409, 413, 415, 502, 503, 504)
_READ_ERRORS = (404, 503)
# What a caller can do next with the payment a create answers with.
_NEXT_STEPS = {
    "GetPayment": Link("getPayment", "payment_id", "id"),
    "GetPaymentStatus": Link("getPaymentStatus", "payment_id", "id"),
    "CancelPayment": Link("cancelPayment", "payment_id", "id"),
    "RefundPayment": Link("refundPayment", "payment_id", "id"),
    "GetOrderPayments": Link("getOrderPayments", "order_id", "order_id"),
}
# The bodies Swagger UI offers under "Try it out"; a test checks that the models accept them.
_CREATE_EXAMPLE = {
    "order_id": "ORD-20261126-0001",
    "amount": 150000,
    "payment_method": "e_wallet",
    "customer_details": {"email": "sari.dewi@example.co.id", "first_name": "Sari"},
    "item_details": [{"id": "TKT-1", "name": "Jakarta - Bandung", "price": 150000}],
}


@bp.before_request
def _require_caller_key() -> Response | None:
    config = current_app.config
    anonymous_allowed = not config["API_AUTH_REQUIRED"] or (
        request.endpoint == "api.create_payment" and config["API_ALLOW_ANONYMOUS_CREATE"]
    )
    if anonymous_allowed and not presents_key():
        return None
    return authenticate(admin=False)


def _caller() -> service.Caller:
    key = request_key()
    if key is None:
        return service.ANONYMOUS
    return service.Caller(key.name, may_read=True, may_change_amount=key.admin)


def _by_key() -> dict[str, str]:
    """Who did it, for the event of a staff action: the name of the key, never the key."""
    key = request_key()
    return {"api_key": key.name} if key else {}


def _json(model: BaseModel, status: int = 200) -> Response:
    response = Response(model.model_dump_json(), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _body() -> dict[str, Any]:
    """The request body as a JSON object, or a 4xx that says what is wrong with it."""
    if not request.is_json:
        raise _Refused(415, "Content-Type must be application/json")
    try:
        body = json.loads(request.get_data(cache=False))
    except (ValueError, RecursionError):
        raise _Refused(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Refused(400, "request body must be a JSON object")
    return body


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise _Refused(400, "Idempotency-Key must be 1-255 printable ASCII characters")
    return key


def _validated(model: type[M], body: dict[str, Any], context: object = None) -> M:
    try:
        return model.model_validate(body, context=context)
    except ValidationError as exc:
        raise _Refused(400, "request body is invalid", validation_errors(exc)) from None


def _out(payment: Payment) -> PaymentOut:
    return PaymentOut.of(payment, payment_url=checkout_url(payment.id))


class _Refused(Exception):
    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors or []


@bp.url_value_preprocessor
def _no_nul_in_ids(endpoint: str | None, values: dict[str, Any] | None) -> None:
    # PostgreSQL refuses NUL in a query parameter (a 500), and no payment or order id has one.
    if any("\x00" in value for value in (values or {}).values()):
        raise PaymentNotFound("Payment not found")


@bp.post("")
@bp.post("/")
@Operation(
    operation_id="createPayment",
    tag="payments",
    success=(201, PaymentOut, "The payment, with its Snap token and redirect URL"),
    links=_NEXT_STEPS,
    errors=_CREATE_ERRORS,
    body=PaymentCreate,
    example=_CREATE_EXAMPLE,
    idempotency_key=IDEMPOTENCY_KEY,
    auth="create",
    alias=Alias(
        "/payments/",
        "createPaymentTrailingSlash",
        "at the path callers of the replaced service use",
    ),
)
def create_payment() -> Response:
    """Open a payment for an order (idempotent per order and per Idempotency-Key)."""
    key = _idempotency_key()
    # The hosts a finish_url may name are configuration, which the schema cannot see by itself.
    payload = _validated(PaymentCreate, _body(), ReturnRules.of(current_app.config))
    payment = service.create_payment(
        payload.to_new_payment(),
        gateway=current_gateway(),
        idempotency_key=key,
        finish_url=finish_url,
        caller=_caller(),
    )
    return _json(_out(payment), 201)


@bp.get("/<payment_id>")
@Operation(
    operation_id="getPayment",
    tag="payments",
    success=(200, PaymentOut, "The payment"),
    errors=_READ_ERRORS,
    path_parameters=_PATH_PARAMETERS,
    auth="caller",
)
def get_payment(payment_id: str) -> Response:
    """Read one payment."""
    return _json(_out(queries.get_payment(payment_id)))


@bp.get("/<payment_id>/status")
@Operation(
    operation_id="getPaymentStatus",
    tag="payments",
    success=(200, PaymentStatusOut, "The payment's status"),
    errors=_READ_ERRORS,
    path_parameters=_PATH_PARAMETERS,
    auth="caller",
)
def get_payment_status(payment_id: str) -> Response:
    """Read a payment's status, asking Midtrans first if it is open and not checked lately."""
    payment = queries.get_payment(payment_id)
    refreshed = reconcile.refresh_if_stale(
        payment.id,
        current_gateway(),
        min_interval=timedelta(seconds=current_app.config["STATUS_REFRESH_SECONDS"]),
    )
    return _json(PaymentStatusOut.of(queries.get_payment(payment_id), refreshed=refreshed))


@bp.post("/<payment_id>/cancel")
@Operation(
    operation_id="cancelPayment",
    tag="payments",
    success=(200, PaymentOut, "The canceled payment"),
    errors=_STAFF_ERRORS,
    body=CancelRequest,
    body_required=False,
    example={"reason": "the traveller changed plans"},
    path_parameters=_PATH_PARAMETERS,
    auth="staff",
)
@require_admin
def cancel_payment(payment_id: str) -> Response:
    """Cancel a payment that is not paid yet (staff key)."""
    body = _validated(CancelRequest, _body() if request.content_length else {})
    payment = queries.get_payment(payment_id)
    canceled = service.cancel_payment(
        payment.id, gateway=current_gateway(), reason=body.reason, data=_by_key()
    )
    return _json(_out(canceled))


@bp.post("/<payment_id>/refund")
@Operation(
    operation_id="refundPayment",
    tag="payments",
    success=(200, RefundOut, "The refund and the payment after it"),
    errors=_STAFF_ERRORS,
    body=RefundCreate,
    example={"amount": 50000, "reason": "one of three tickets returned"},
    path_parameters=_PATH_PARAMETERS,
    idempotency_key=IDEMPOTENCY_KEY,
    auth="staff",
)
@require_admin
def refund_payment(payment_id: str) -> Response:
    """Refund part or all of a settled payment; one Idempotency-Key refunds once (staff key)."""
    key = _idempotency_key()
    body = _validated(RefundCreate, _body())
    payment = queries.get_payment(payment_id)
    refund = service.refund_payment(
        payment.id,
        gateway=current_gateway(),
        amount=body.amount,
        reason=body.reason,
        request_key=key,
        data=_by_key(),
    )
    refunded = queries.get_payment(payment_id)
    return _json(RefundOut.of(refund, refunded, payment_url=checkout_url(refunded.id)))


@bp.get("/order/<order_id>")
@Operation(
    operation_id="getOrderPayments",
    tag="payments",
    success=(200, {"type": "array", "items": PaymentOut}, "The attempts"),
    errors=_READ_ERRORS,
    path_parameters=_PATH_PARAMETERS,
    auth="caller",
)
def get_order_payments(order_id: str) -> Response:
    """List an order's payment attempts, newest first."""
    payments = queries.payments_for_order(order_id)
    if not payments:
        raise PaymentNotFound(f"no payment for order {order_id}")
    body = _PAYMENT_LIST.dump_json([_out(p) for p in payments])
    return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})


@bp.errorhandler(_Refused)
def _refused(exc: _Refused) -> Response:
    return json_error(exc.status, exc.detail, exc.errors)


@bp.errorhandler(PaymentError)
def _domain_error(exc: PaymentError) -> Response:
    return json_error(_DOMAIN_STATUS.get(type(exc), 400), exc.detail, exc.errors)


@bp.errorhandler(GatewayError)
def _gateway_error(exc: GatewayError) -> Response:
    errors = [{"gateway_message": m} for m in exc.messages]
    if isinstance(exc, GatewayTimeout):
        return json_error(504, "Midtrans did not answer in time; retry the request", errors)
    if isinstance(exc, GatewayAuthError):
        return json_error(502, "Midtrans refused our credentials; the service is misconfigured")
    if isinstance(exc, GatewayRejected):
        return json_error(502, "Midtrans refused the payment", errors)
    response = json_error(503, "Midtrans is unavailable; retry the request", errors)
    response.headers["Retry-After"] = "5"
    return response
