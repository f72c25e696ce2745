"""The payment-gateway port: what the domain asks of Midtrans, in plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from flask import current_app

# The port speaks the domain's words: an answer is what the money rules decide on.
from tiketq.payments.rules import Answer

if TYPE_CHECKING:
    from flask import Flask

EXTENSION_KEY = "tiketq.gateway"


@dataclass(frozen=True)
class LineItem:
    """One priced line of an order, in integer rupiah."""

    id: str
    name: str
    price: int
    quantity: int


@dataclass(frozen=True)
class CheckoutRequest:
    """Everything the gateway needs to open a payment page for one attempt."""

    gateway_order_id: str
    amount: int
    items: tuple[LineItem, ...]
    customer: dict[str, str]
    payment_method: str | None
    starts_at: datetime
    expires_in_minutes: int
    # Where Snap sends the traveller's browser when the payment finishes, fails or is left.
    finish_url: str | None = None


@dataclass(frozen=True)
class Checkout:
    """A payment page the traveller can be sent to."""

    token: str
    redirect_url: str


@dataclass(frozen=True)
class GatewayTransaction:
    """The gateway's view of one transaction, with its raw fields kept for the record."""

    order_id: str
    transaction_status: str | None
    status_code: str
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NotificationHint:
    """A notification that passed the door: signed by the gateway, its claims still unchecked.

    It only says which order to ask about; what the order's state is comes from get_status.
    """

    order_id: str
    status_code: str
    gross_amount: str
    transaction_status: str
    # Identical deliveries share this key, so a redelivery costs no second status call.
    dedupe_key: str


class InvalidNotification(Exception):
    """A notification that cannot be read (not a JSON object, wrong field types)."""


class InvalidSignature(Exception):
    """A notification whose signature is missing or wrong: not from the gateway."""


class StatusMismatch(InvalidNotification):
    """A signed notification whose status_code cannot go with its transaction_status."""


class GatewayError(Exception):
    """The gateway could not do what was asked."""

    def __init__(self, operation: str, detail: str, messages: list[str] | None = None) -> None:
        super().__init__(f"{operation}: {detail}")
        self.operation = operation
        self.detail = detail
        self.messages = messages or []


class GatewayRejected(GatewayError):
    """The gateway understood the request and refused it (validation, wrong state)."""


class GatewayAuthError(GatewayError):
    """The gateway refused our credentials: wrong key or wrong environment."""


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached or failed on its side."""


class GatewayTimeout(GatewayError):
    """The gateway did not answer in time; the outcome is unknown."""


class TransactionNotFound(GatewayError):
    """The gateway has no transaction with that id (normal before a method is chosen)."""


class UntrustedAnswer(GatewayError):
    """A status answer that is not about the transaction asked for, or whose signature fails."""


class Gateway(Protocol):
    """What the payments domain needs from a payment gateway."""

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Open a payment page for one attempt."""
        ...

    def verify_notification(self, body: dict[str, Any]) -> NotificationHint:
        """Check a notification's signature and shape; raise InvalidNotification/Signature."""
        ...

    def cancel_checkout(self, token: str) -> None:
        """Close a payment page on which no method was chosen yet."""
        ...

    def get_status(
        self,
        gateway_order_id: str,
        *,
        transaction_id: str | None = None,
        payment_type: str | None = None,
    ) -> Answer:
        """The gateway's verified word on a transaction; TransactionNotFound if it has none."""
        ...

    def cancel(self, gateway_order_id: str) -> GatewayTransaction:
        """Cancel a transaction that is not paid yet."""
        ...

    def expire(self, gateway_order_id: str) -> GatewayTransaction:
        """Expire a pending transaction now."""
        ...

    def refund(
        self, gateway_order_id: str, *, refund_key: str, amount: int, reason: str
    ) -> GatewayTransaction:
        """Refund part or all of a settled transaction, once per refund_key."""
        ...


def init_app(app: Flask) -> None:
    """Create the Midtrans adapter from config and mount the in-app simulator when asked."""
    # Imported here so that importing the port never imports midtransclient.
    from tiketq.gateway.breaker import CircuitBreaker
    from tiketq.gateway.midtrans import MidtransGateway

    config = app.config
    if config["MIDTRANS_SIMULATOR_IN_APP"]:
        import midtrans_simulator as simulator

        simulator.init_app(
            app,
            server_key=config["MIDTRANS_SERVER_KEY"],
            state_path=config["MIDTRANS_SIMULATOR_STATE"],
            notification_url=config["MIDTRANS_SIMULATOR_NOTIFICATION_URL"],
        )
    gateway: Gateway = MidtransGateway(
        server_key=config["MIDTRANS_SERVER_KEY"],
        client_key=config["MIDTRANS_CLIENT_KEY"],
        is_production=config["MIDTRANS_IS_PRODUCTION"],
        base_url=config["MIDTRANS_BASE_URL"],
        timeout=(config["MIDTRANS_CONNECT_TIMEOUT"], config["MIDTRANS_READ_TIMEOUT"]),
    )
    if config["MIDTRANS_BREAKER_FAILURES"] > 0:
        gateway = CircuitBreaker(
            gateway,
            threshold=config["MIDTRANS_BREAKER_FAILURES"],
            cooldown=config["MIDTRANS_BREAKER_SECONDS"],
        )
    app.extensions[EXTENSION_KEY] = gateway


def current_gateway() -> Gateway:
    """The gateway adapter of the current app."""
    gateway: Gateway = current_app.extensions[EXTENSION_KEY]
    return gateway
