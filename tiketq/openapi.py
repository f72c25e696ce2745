"""The OpenAPI 3.1 document of the service, built from the pydantic models that check requests."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from tiketq.api import _IDEMPOTENCY_KEY
from tiketq.payments.orders import CALLER_ORDER_ID_PATTERN
from tiketq.schemas import (
    CancelRequest,
    ErrorOut,
    PaymentCreate,
    PaymentOut,
    PaymentStatusOut,
    RefundCreate,
    RefundOut,
)

REF_TEMPLATE = "#/components/schemas/{model}"
_KEY_SECURITY = [{"bearerAuth": []}, {"apiKeyAuth": []}]
# Who must present an API key: nobody; every caller when API_AUTH_REQUIRED is set ("create":
# unless API_ALLOW_ANONYMOUS_CREATE is set too); staff, always.
Auth = Literal["none", "caller", "create", "staff"]


class NotificationAck(BaseModel):
    """What the webhook tells Midtrans; any status but 200 makes Midtrans send it again."""

    outcome: Literal["accepted", "bad_signature", "status_mismatch", "malformed"]
    notification_id: int
    detail: str | None


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]
    service: str


class Migrations(BaseModel):
    """The schema revision the database is at, and the one the code expects."""

    current: list[str] = Field(default_factory=list)
    head: list[str]


class Readiness(BaseModel):
    """Readiness: whether the database answers and is migrated."""

    status: Literal["ok", "unavailable"]
    database: str
    migrations: Migrations | None = None


# Request models are described as pydantic validates them, response models as it writes them.
_MODELS: tuple[tuple[type[BaseModel], Literal["validation", "serialization"]], ...] = (
    (PaymentCreate, "validation"),
    (CancelRequest, "validation"),
    (RefundCreate, "validation"),
    (PaymentOut, "serialization"),
    (PaymentStatusOut, "serialization"),
    (RefundOut, "serialization"),
    (ErrorOut, "serialization"),
    (NotificationAck, "serialization"),
    (Health, "serialization"),
    (Readiness, "serialization"),
)

_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    # Flask's default converter takes any text up to the next slash.
    "payment_id": {
        "type": "string",
        "pattern": "^[^/]+$",
        "description": "the payment's UUID, or a legacy `payment-<order_id>` (its latest attempt)",
    },
    "order_id": {"type": "string", "pattern": CALLER_ORDER_ID_PATTERN},
}

_IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "a retry with the same key and body gets the first answer, not a second effect",
    "schema": {"type": "string", "pattern": _IDEMPOTENCY_KEY.pattern},
}

_RETRY_AFTER = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}

_ERRORS: dict[int, str] = {
    400: "The body, its JSON, a header or the order is invalid; `errors` says which field",
    401: "No valid API key (Authorization: Bearer <key>, or X-API-Key); staff key for staff",
    404: "No such payment",
    409: (
        "The payment's state does not allow this; or the order has another live payment, "
        "opened by another request (a caller without a key learns nothing of it), or "
        "another amount"
    ),
    413: "The body is larger than MAX_CONTENT_LENGTH",
    415: "Content-Type is not application/json",
    422: "The Idempotency-Key was used before with a different body",
    502: "Midtrans refused the request",
    503: "Midtrans or the database is unavailable; retry after Retry-After seconds",
    504: "Midtrans did not answer in time; retrying is safe",
}


@dataclass(frozen=True)
class Route:
    """One documented operation: a Flask rule, a method, and what it answers."""

    method: str
    rule: str
    operation_id: str
    summary: str
    tag: str
    success: tuple[int, dict[str, Any]]
    errors: tuple[int, ...] = ()
    body: dict[str, Any] | None = None
    body_required: bool = True
    idempotent: bool = False
    auth: Auth = "none"
    refusals: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """The rule in OpenAPI's template syntax: <payment_id> becomes {payment_id}."""
        return openapi_path(self.rule)


def openapi_path(rule: str) -> str:
    """A Flask rule in OpenAPI's template syntax."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _json(schema: dict[str, Any], example: dict[str, Any] | None = None) -> dict[str, Any]:
    media = {"schema": schema} if example is None else {"schema": schema, "example": example}
    return {"application/json": media}


def _answer(description: str, schema: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"description": description, "content": _json(schema), **more}


def _link(operation_id: str, parameter: str, field_name: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": {parameter: f"$response.body#/{field_name}"}}


# Bodies Swagger UI offers under "Try it out"; a test checks that the models accept them.
EXAMPLES: dict[type[BaseModel], dict[str, Any]] = {
    PaymentCreate: {
        "order_id": "ORD-20261126-0001",
        "amount": 150000,
        "payment_method": "e_wallet",
        "customer_details": {"email": "sari.dewi@example.co.id", "first_name": "Sari"},
        "item_details": [{"id": "TKT-1", "name": "Jakarta - Bandung", "price": 150000}],
    },
    CancelRequest: {"reason": "the traveller changed plans"},
    RefundCreate: {"amount": 50000, "reason": "one of three tickets returned"},
}

# What a caller can do next with the payment a create answers with.
_NEXT_STEPS = {
    "GetPayment": _link("getPayment", "payment_id", "id"),
    "GetPaymentStatus": _link("getPaymentStatus", "payment_id", "id"),
    "CancelPayment": _link("cancelPayment", "payment_id", "id"),
    "RefundPayment": _link("refundPayment", "payment_id", "id"),
    "GetOrderPayments": _link("getOrderPayments", "order_id", "order_id"),
}
_CREATED = (
    201,
    _answer(
        "The payment, with its Snap token and redirect URL", _ref(PaymentOut), links=_NEXT_STEPS
    ),
)
# 401 too without keys required: a key that is given is checked.
_CREATE_ERRORS = (400, 401, 409, 413, 415, 422, 502, 503, 504)
_ADMIN_ERRORS = (400, 404, 409, 413, 415, 502, 503, 504)
_NOTIFICATION = _json(
    {
        "type": "object",
        "description": "A Midtrans HTTP notification; its signature_key is checked first",
    }
)
_ACK = _ref(NotificationAck)
_HANDLED = (200, _answer("Stored for the worker to apply; Midtrans stops sending it", _ACK))
# Answers that make Midtrans send the notification again.
_WEBHOOK_REFUSALS = {
    400: _answer(
        "Not a notification: not a JSON object, or text that cannot be stored",
        {"anyOf": [_ACK, _ref(ErrorOut)]},
    ),
    403: _answer(
        "The signature is missing or wrong, or the status_code cannot go with the "
        "transaction_status",
        _ACK,
    ),
}

# The one list of documented routes; a test compares it with the app's URL map.
ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/payments",
        "createPayment",
        "Open a payment for an order (idempotent per order and per Idempotency-Key)",
        "payments",
        _CREATED,
        _CREATE_ERRORS,
        body=_json(_ref(PaymentCreate), EXAMPLES[PaymentCreate]),
        idempotent=True,
        auth="create",
    ),
    Route(
        "POST",
        "/payments/",
        "createPaymentTrailingSlash",
        "Same as POST /payments, at the path callers of the replaced service use",
        "payments",
        _CREATED,
        _CREATE_ERRORS,
        body=_json(_ref(PaymentCreate), EXAMPLES[PaymentCreate]),
        idempotent=True,
        auth="create",
    ),
    Route(
        "GET",
        "/payments/<payment_id>",
        "getPayment",
        "Read one payment",
        "payments",
        (200, _answer("The payment", _ref(PaymentOut))),
        (404, 503),
        auth="caller",
    ),
    Route(
        "GET",
        "/payments/<payment_id>/status",
        "getPaymentStatus",
        "Read a payment's status, asking Midtrans first if it is open and not checked lately",
        "payments",
        (200, _answer("The payment's status", _ref(PaymentStatusOut))),
        (404, 503),
        auth="caller",
    ),
    Route(
        "POST",
        "/payments/<payment_id>/cancel",
        "cancelPayment",
        "Cancel a payment that is not paid yet (staff key)",
        "payments",
        (200, _answer("The canceled payment", _ref(PaymentOut))),
        _ADMIN_ERRORS,
        body=_json(_ref(CancelRequest), EXAMPLES[CancelRequest]),
        body_required=False,
        auth="staff",
    ),
    Route(
        "POST",
        "/payments/<payment_id>/refund",
        "refundPayment",
        "Refund part or all of a settled payment; one Idempotency-Key refunds once (staff key)",
        "payments",
        (200, _answer("The refund and the payment after it", _ref(RefundOut))),
        _ADMIN_ERRORS,
        body=_json(_ref(RefundCreate), EXAMPLES[RefundCreate]),
        idempotent=True,
        auth="staff",
    ),
    Route(
        "GET",
        "/payments/order/<order_id>",
        "getOrderPayments",
        "List an order's payment attempts, newest first",
        "payments",
        (200, _answer("The attempts", {"type": "array", "items": _ref(PaymentOut)})),
        (404, 503),
        auth="caller",
    ),
    Route(
        "POST",
        "/payments/webhook",
        "receiveMidtransNotification",
        "Midtrans's notification URL: verify a notification and store it for the worker",
        "webhooks",
        _HANDLED,
        (413, 503),
        body=_NOTIFICATION,
        refusals=_WEBHOOK_REFUSALS,
    ),
    Route(
        "POST",
        "/webhook/midtrans",
        "receiveMidtransNotificationLegacy",
        "Same as POST /payments/webhook, at the URL of the replaced service",
        "webhooks",
        _HANDLED,
        (413, 503),
        body=_NOTIFICATION,
        refusals=_WEBHOOK_REFUSALS,
    ),
    Route(
        "GET",
        "/health",
        "health",
        "Liveness: the process answers; touches nothing else",
        "ops",
        (200, _answer("Alive", _ref(Health))),
    ),
    Route(
        "GET",
        "/health/ready",
        "ready",
        "Readiness: the database answers and its schema is at the migrations' head",
        "ops",
        (200, _answer("Ready", _ref(Readiness))),
        refusals={503: _answer("Not ready", _ref(Readiness))},
    ),
)


def _responses(route: Route, *, key_required: bool) -> dict[str, Any]:
    status, success = route.success
    responses: dict[int, dict[str, Any]] = {status: success}
    for code in (*route.errors, 401) if key_required else route.errors:
        responses[code] = _answer(_ERRORS[code], _ref(ErrorOut))
        if code == 503:
            responses[code]["headers"] = _RETRY_AFTER
    responses.update(route.refusals)
    return {str(code): responses[code] for code in sorted(responses)}


def _operation(route: Route, *, key_required: bool) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": _PATH_PARAMETERS[name]}
        for name in re.findall(r"{([^}]+)}", route.path)
    ]
    if route.idempotent:
        parameters.append(_IDEMPOTENCY_HEADER)
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "responses": _responses(route, key_required=key_required),
    }
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {"required": route.body_required, "content": route.body}
    if key_required:
        operation["security"] = _KEY_SECURITY
    return operation


def _key_required(auth: Auth, *, callers_need_keys: bool, anonymous_create: bool) -> bool:
    if auth == "create":
        return callers_need_keys and not anonymous_create
    return auth == "staff" or (auth == "caller" and callers_need_keys)


def component_schemas() -> dict[str, Any]:
    """Every model's JSON schema, with the models it nests, keyed by model name."""
    schemas: dict[str, Any] = {}
    for model, mode in _MODELS:
        schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode=mode)
        for name, sub in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if schemas.setdefault(name, sub) != sub:
                raise ValueError(f"two different JSON schemas are both named {name}")
    return schemas


@functools.cache
def document(*, callers_need_keys: bool = False, anonymous_create: bool = True) -> dict[str, Any]:
    """The OpenAPI 3.1 document for API_AUTH_REQUIRED and API_ALLOW_ANONYMOUS_CREATE; cached."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        required = _key_required(
            route.auth, callers_need_keys=callers_need_keys, anonymous_create=anonymous_create
        )
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(
            route, key_required=required
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TiketQ Payments",
            "version": "1",
            "description": "Takes money for TiketQ orders through Midtrans Snap.",
        },
        "tags": [
            {"name": "payments", "description": "The JSON API for the gateway and services"},
            {"name": "webhooks", "description": "Midtrans's notification URL"},
            {"name": "ops", "description": "Health checks"},
        ],
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a caller key (API_KEYS) or a staff key (ADMIN_API_KEYS)",
                },
                "apiKeyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "the same keys, for callers that cannot set Authorization",
                },
            },
        },
    }
