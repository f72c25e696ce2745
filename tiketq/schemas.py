"""JSON shapes of the API: pydantic models that validate requests and describe responses."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from tiketq.checkout.addresses import MAX_LENGTH as MAX_FINISH_URL_LENGTH
from tiketq.checkout.addresses import ReturnRules, finish_url_problem
from tiketq.payments import rules
from tiketq.payments.models import Payment, Refund
from tiketq.payments.orders import (
    CALLER_ORDER_ID_PATTERN,
    ItemLine,
    PaymentMethod,
    caller_order_id_problem,
)
from tiketq.payments.service import NewPayment

MAX_RUPIAH = 10**12
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
NO_RETURN_HOSTS = ReturnRules(hosts=frozenset(), https_only=True)


def _whole_rupiah(value: object) -> object:
    # Callers send float totals such as 150000.0; a fraction of a rupiah does not exist.
    if isinstance(value, bool):
        raise ValueError("must be a number of rupiah, not a boolean")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be whole rupiah (IDR has no fraction)")
        return int(value)
    if not isinstance(value, int):
        raise ValueError("must be a number of rupiah")
    return value


def _plain_text(value: str) -> str:
    # PostgreSQL cannot store NUL, and control characters have no place in a name.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _caller_order_id(value: object) -> object:
    # Before the pattern, so that the answer says why rather than "should match pattern".
    if isinstance(value, str) and (problem := caller_order_id_problem(value)):
        raise ValueError(problem)
    return value


_RUPIAH_SCHEMA = WithJsonSchema({"type": "number", "multipleOf": 1})
Rupiah = Annotated[int, BeforeValidator(_whole_rupiah), _RUPIAH_SCHEMA]
Text = Annotated[str, AfterValidator(_plain_text)]
FinishUrl = Annotated[
    str,
    Field(
        max_length=MAX_FINISH_URL_LENGTH,
        description="where the traveller goes back to after paying, on a FINISH_URL_HOSTS host "
        "(https in production); without it, FINISH_URL",
    ),
]


class CustomerDetails(BaseModel):
    """Who pays; the transaction service sends only an email."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    email: Annotated[Text, Field(max_length=255, pattern=_EMAIL)] | None = None
    first_name: Annotated[Text, Field(max_length=255)] | None = None
    last_name: Annotated[Text, Field(max_length=255)] | None = None
    phone: Annotated[Text, Field(max_length=255, pattern=r"^\+?[0-9 ()\-]{4,30}$")] | None = None


class ItemDetail(BaseModel):
    """One order line; a negative price is a discount."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: Annotated[Text, Field(max_length=255)] | None = None
    name: Annotated[Text, Field(min_length=1, max_length=255)]
    price: Annotated[Rupiah, Field(ge=-MAX_RUPIAH, le=MAX_RUPIAH)]
    quantity: Annotated[StrictInt, Field(ge=1, le=10_000)] = 1


class PaymentCreate(BaseModel):
    """A request to collect an order's amount."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    # Not stripped: "ORD-1\n" is not the caller's order "ORD-1".
    order_id: Annotated[
        str,
        StringConstraints(strip_whitespace=False, pattern=CALLER_ORDER_ID_PATTERN),
        BeforeValidator(_caller_order_id),
    ]
    amount: Annotated[Rupiah, Field(gt=0, le=MAX_RUPIAH)]
    currency: Literal["IDR"] = "IDR"
    payment_method: PaymentMethod | None = None
    customer_details: CustomerDetails = Field(default_factory=CustomerDetails)
    item_details: Annotated[list[ItemDetail], Field(max_length=100)] = Field(default_factory=list)
    description: Annotated[Text, Field(max_length=255)] | None = None
    expiry_duration: Annotated[StrictInt, Field(ge=1, le=168, description="hours")] = 1
    finish_url: FinishUrl | None = None

    @field_validator("finish_url")
    @classmethod
    def _finish_url_on_an_allowed_host(cls, value: str | None, info: ValidationInfo) -> str | None:
        # The allow-list comes from the app's configuration, passed in as the context; without
        # one, no address is allowed: a finish_url sends travellers wherever it says.
        if value is None:
            return None
        rules = info.context if isinstance(info.context, ReturnRules) else NO_RETURN_HOSTS
        problem = finish_url_problem(value, rules)
        if problem:
            raise PydanticCustomError("finish_url_host", problem)
        return value

    def to_new_payment(self) -> NewPayment:
        """The domain's view of this request."""
        return NewPayment(
            order_id=self.order_id,
            amount=self.amount,
            payment_method=self.payment_method,
            customer=self.customer_details.model_dump(exclude_none=True),
            items=tuple(
                ItemLine(id=i.id, name=i.name, price=i.price, quantity=i.quantity)
                for i in self.item_details
            ),
            description=self.description,
            expiry_hours=self.expiry_duration,
            finish_url=self.finish_url,
        )


class PaymentMetadata(BaseModel):
    """Fields the service we replace kept under `metadata`; callers may still read them."""

    token: str | None
    expiry_time: datetime
    expiry_duration: int


class PaymentOut(BaseModel):
    """A payment as callers see it."""

    id: str
    order_id: str
    gateway_order_id: str
    transaction_id: str = Field(description="equals order_id, as existing callers expect")
    amount: int
    currency: str
    status: str
    status_detail: str | None
    payment_method: str | None
    payment_type: str | None
    payment_url: str = Field(description="the traveller's checkout page, /checkout/<id>")
    snap_token: str | None
    snap_redirect_url: str | None
    refunded_amount: int
    expires_at: datetime
    paid_at: datetime | None
    created_at: datetime
    updated_at: datetime
    metadata: PaymentMetadata

    @classmethod
    def of(cls, payment: Payment, *, payment_url: str) -> PaymentOut:
        """Describe a stored payment; `payment_url` is where the traveller pays it."""
        hours = rules.expiry_hours(payment.created_at, payment.expires_at)
        return cls(
            id=str(payment.id),
            order_id=payment.order_id,
            gateway_order_id=payment.gateway_order_id,
            transaction_id=payment.order_id,
            amount=payment.amount,
            currency=payment.currency,
            status=payment.status.value,
            status_detail=payment.status_detail,
            payment_method=payment.payment_method,
            payment_type=payment.payment_type,
            payment_url=payment_url,
            snap_token=payment.snap_token,
            snap_redirect_url=payment.snap_redirect_url,
            refunded_amount=payment.refunded_amount,
            expires_at=payment.expires_at,
            paid_at=payment.paid_at,
            created_at=payment.created_at,
            updated_at=payment.updated_at,
            metadata=PaymentMetadata(
                token=payment.snap_token, expiry_time=payment.expires_at, expiry_duration=hours
            ),
        )


class PaymentStatusOut(BaseModel):
    """The status summary the service we replace returned from /status."""

    payment_id: str
    order_id: str
    status: str
    current_status: str
    status_detail: str | None
    amount: int
    payment_method: str | None
    last_updated: datetime
    auto_updated: bool = Field(description="whether Midtrans was asked during this request")

    @classmethod
    def of(cls, payment: Payment, *, refreshed: bool) -> PaymentStatusOut:
        """Summarise a stored payment's status."""
        return cls(
            payment_id=str(payment.id),
            order_id=payment.order_id,
            status=payment.status.value,
            current_status=payment.status.value,
            status_detail=payment.status_detail,
            amount=payment.amount,
            payment_method=payment.payment_method,
            last_updated=payment.updated_at,
            auto_updated=refreshed,
        )


class ErrorOut(BaseModel):
    """Every error the API answers with."""

    detail: str
    errors: list[dict[str, Any]] = Field(default_factory=list)


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as {field, message} pairs, without echoing the input back."""
    return [
        {"field": ".".join(str(part) for part in error["loc"]) or "body", "message": error["msg"]}
        for error in exc.errors(include_url=False, include_input=False)
    ]


class CancelRequest(BaseModel):
    """Why a payment is being canceled."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: Annotated[Text, Field(max_length=255)] | None = None


class RefundCreate(BaseModel):
    """A refund request; without an amount, everything not yet refunded."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    amount: Annotated[Rupiah, Field(gt=0, le=MAX_RUPIAH)] | None = None
    reason: Annotated[Text, Field(min_length=1, max_length=255)]


class RefundOut(BaseModel):
    """One refund, and the payment after it."""

    refund_key: str
    amount: int
    reason: str
    status: str
    created_at: datetime
    payment: PaymentOut

    @classmethod
    def of(cls, refund: Refund, payment: Payment, *, payment_url: str) -> RefundOut:
        """Describe a stored refund."""
        return cls(
            refund_key=refund.refund_key,
            amount=refund.amount,
            reason=refund.reason,
            status=refund.status,
            created_at=refund.created_at,
            payment=PaymentOut.of(payment, payment_url=payment_url),
        )
