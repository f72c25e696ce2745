"""The Midtrans adapter: the only module that knows midtransclient."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import midtransclient
import requests
from midtransclient.config import ApiConfig
from midtransclient.error_midtrans import JSONDecodeError as MidtransJSONDecodeError

from tiketq.formats import MIDTRANS_TIME, WIB, midtrans_time
from tiketq.gateway import (
    Answer,
    Checkout,
    CheckoutRequest,
    GatewayAuthError,
    GatewayError,
    GatewayRejected,
    GatewayTimeout,
    GatewayTransaction,
    GatewayUnavailable,
    InvalidNotification,
    InvalidSignature,
    NotificationHint,
    StatusMismatch,
    TransactionNotFound,
    UntrustedAnswer,
)
from tiketq.metrics import MIDTRANS_ERRORS, MIDTRANS_LATENCY
from tiketq.payments.rules import Charge

log = logging.getLogger(__name__)


# Snap `enabled_payments` codes for each of our payment methods. Mandiri VA is `echannel`;
# QRIS paid from any wallet arrives as payment_type "qris".
ENABLED_PAYMENTS: dict[str, list[str]] = {
    "credit_card": ["credit_card"],
    "bank_transfer": ["bca_va", "bni_va", "bri_va", "echannel", "permata_va"],
    "e_wallet": ["gopay", "shopeepay", "ovo", "dana"],
    "qris": ["other_qris"],
    "retail": ["indomaret", "alfamart"],
}

T = TypeVar("T")


class TimeoutSession(requests.Session):
    """A requests session that never waits forever and never follows redirects.

    midtransclient passes no timeout and follows redirects (turning a POST into a GET);
    it calls `request()` on whatever object sits in `http_client.http_client`.
    """

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.timeout = timeout

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        kwargs["allow_redirects"] = False
        return super().request(method, url, *args, **kwargs)


def _api_config_class(base_url: str) -> type[ApiConfig]:
    """An ApiConfig that points both Snap and Core at one Midtrans-compatible host."""
    root = base_url.rstrip("/")

    class HostConfig(ApiConfig):
        CORE_SANDBOX_BASE_URL = CORE_PRODUCTION_BASE_URL = root
        SNAP_SANDBOX_BASE_URL = SNAP_PRODUCTION_BASE_URL = root + "/snap/v1"

    return HostConfig


class MidtransGateway:
    """Snap for checkout and the Core API for status and actions, with timeouts and our errors."""

    def __init__(
        self,
        *,
        server_key: str,
        client_key: str,
        is_production: bool,
        base_url: str | None,
        timeout: tuple[float, float],
    ) -> None:
        config_class = _api_config_class(base_url) if base_url else ApiConfig
        # A fresh headers dict each time: midtransclient's default one is shared by instances.
        config = config_class(
            is_production=is_production,
            server_key=server_key,
            client_key=client_key,
            custom_headers={},
            proxies={},
        )
        self._snap = midtransclient.Snap(custom_headers={}, proxies={})
        self._snap.api_config = config
        self._snap.http_client.http_client = TimeoutSession(timeout)
        self.is_production = is_production

    def __repr__(self) -> str:
        # The library's config repr prints the server key; never let it reach a log.
        return f"MidtransGateway(is_production={self.is_production})"

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Create a Snap transaction and return its token and redirect URL."""
        body = self._call(
            "snap.create",
            request.gateway_order_id,
            self._snap.create_transaction,
            snap_body(request),
        )
        return Checkout(token=body["token"], redirect_url=body["redirect_url"])

    def cancel_checkout(self, token: str) -> None:
        """Cancel a Snap session by token (midtransclient lacks it, so use its HTTP client)."""
        config = self._snap.api_config
        url = f"{config.get_snap_base_url()}/transactions/{token}/cancel"
        self._call(
            "snap.cancel",
            token,
            self._snap.http_client.request,
            "post",
            config.server_key,
            url,
            {},
            {},
            {},
        )

    def get_status(
        self,
        gateway_order_id: str,
        *,
        transaction_id: str | None = None,
        payment_type: str | None = None,
    ) -> Answer:
        """Read and verify the Core API status of a transaction, in our words."""
        key = gateway_order_id
        if payment_type in _LOOKUP_BY_TRANSACTION_ID and transaction_id:
            key = transaction_id
        body = self._call("core.status", gateway_order_id, self._snap.transactions.status, key)
        try:
            return read_answer(body, gateway_order_id, self._snap.api_config.server_key)
        except UntrustedAnswer as exc:
            raise self._failed(
                UntrustedAnswer, "core.status", gateway_order_id, exc.detail
            ) from None

    def cancel(self, gateway_order_id: str) -> GatewayTransaction:
        """Cancel a transaction through the Core API."""
        transactions = self._snap.transactions
        return _transaction(
            self._call("core.cancel", gateway_order_id, transactions.cancel, gateway_order_id)
        )

    def expire(self, gateway_order_id: str) -> GatewayTransaction:
        """Expire a pending transaction through the Core API."""
        transactions = self._snap.transactions
        return _transaction(
            self._call("core.expire", gateway_order_id, transactions.expire, gateway_order_id)
        )

    def refund(
        self, gateway_order_id: str, *, refund_key: str, amount: int, reason: str
    ) -> GatewayTransaction:
        """Refund through the Core API; the same refund_key never refunds twice."""
        params = {"refund_key": refund_key, "amount": amount, "reason": reason}
        transactions = self._snap.transactions
        return _transaction(
            self._call(
                "core.refund", gateway_order_id, transactions.refund, gateway_order_id, params
            )
        )

    def verify_notification(self, body: dict[str, Any]) -> NotificationHint:
        """Verify a notification's signature in constant time and its status_code's fit."""
        verify_signature(body, self._snap.api_config.server_key)
        return read_notification(body)

    def _call(self, operation: str, order_id: str, fn: Callable[..., T], *args: Any) -> T:
        with MIDTRANS_LATENCY.labels(operation).time():
            return self._call_untimed(operation, order_id, fn, *args)

    def _call_untimed(self, operation: str, order_id: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except requests.ConnectTimeout as exc:
            raise self._failed(GatewayUnavailable, operation, order_id, "connect timeout") from exc
        except requests.Timeout as exc:
            raise self._failed(GatewayTimeout, operation, order_id, "read timeout") from exc
        except requests.RequestException as exc:
            raise self._failed(
                GatewayUnavailable, operation, order_id, f"connection failed ({type(exc).__name__})"
            ) from exc
        except (MidtransJSONDecodeError, ValueError) as exc:
            # A non-JSON body (an HTML 502 page, a redirect) or a non-numeric status_code.
            raise self._failed(
                GatewayUnavailable, operation, order_id, "answer was not Midtrans JSON"
            ) from exc
        except midtransclient.MidtransAPIError as exc:
            raise self._api_error(operation, order_id, exc) from exc

    def _api_error(
        self, operation: str, order_id: str, exc: midtransclient.MidtransAPIError
    ) -> GatewayError:
        body = exc.api_response_dict if isinstance(exc.api_response_dict, dict) else {}
        messages = body.get("error_messages") or (
            [body["status_message"]] if body.get("status_message") else []
        )
        messages = [str(m) for m in messages] if isinstance(messages, list) else [str(messages)]
        code = _int(body.get("status_code")) or exc.http_status_code or 0
        http = exc.http_status_code or 0
        if 401 in (http, code):
            kind: type[GatewayError] = GatewayAuthError
        elif code == 404 and http < 400:
            kind = TransactionNotFound
        elif http >= 500 or code >= 500 or http == 429 or code == 429:
            kind = GatewayUnavailable
        else:
            kind = GatewayRejected
        return self._failed(kind, operation, order_id, f"HTTP {http}, code {code}", messages)

    @staticmethod
    def _failed(
        kind: type[GatewayError],
        operation: str,
        order_id: str,
        detail: str,
        messages: list[str] | None = None,
    ) -> GatewayError:
        MIDTRANS_ERRORS.labels(operation, kind.__name__).inc()
        errors = (GatewayAuthError, GatewayUnavailable, UntrustedAnswer)
        level = logging.ERROR if kind in errors else logging.WARNING
        if kind is TransactionNotFound:
            level = logging.INFO
        log.log(
            level,
            "midtrans %s failed: %s",
            operation,
            detail,
            extra={"operation": operation, "gateway_order_id": order_id, "messages": messages},
        )
        return kind(operation, detail, messages)


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _transaction(body: dict[str, Any]) -> GatewayTransaction:
    return GatewayTransaction(
        order_id=str(body.get("order_id", "")),
        transaction_status=body.get("transaction_status"),
        status_code=str(body.get("status_code", "")),
        raw=body,
    )


def snap_body(request: CheckoutRequest) -> dict[str, Any]:
    """The Snap create-transaction body for one checkout attempt."""
    body: dict[str, Any] = {
        "transaction_details": {
            "order_id": request.gateway_order_id,
            "gross_amount": request.amount,
        },
        "credit_card": {"secure": True},
        "expiry": {
            "start_time": request.starts_at.astimezone(WIB).strftime(f"{MIDTRANS_TIME} %z"),
            "unit": "minute",
            "duration": request.expires_in_minutes,
        },
        # Snap sends no notification when only its page expires, so keep both lifetimes equal.
        "page_expiry": {"unit": "minute", "duration": request.expires_in_minutes},
    }
    if request.items:
        body["item_details"] = [
            {"id": i.id, "name": i.name, "price": i.price, "quantity": i.quantity}
            for i in request.items
        ]
    if request.customer:
        body["customer_details"] = dict(request.customer)
    if request.payment_method:
        body["enabled_payments"] = list(ENABLED_PAYMENTS[request.payment_method])
    if request.finish_url:
        body["callbacks"] = {"finish": request.finish_url, "error": request.finish_url}
    return body


_SIGNED = ("order_id", "status_code", "gross_amount")
# The status_code Midtrans sends with each transaction_status (protocol notes, sections 3 and 4):
# anything else is a tampered copy of a real notification, refused before it costs a status call.
_STATUS_CODES = {
    "200": frozenset(
        {
            "capture",
            "settlement",
            "authorize",
            "refund",
            "partial_refund",
            "chargeback",
            "partial_chargeback",
        }
    ),
    "201": frozenset({"pending", "capture"}),  # a capture held by the fraud check reads as 201
    "202": frozenset({"deny", "cancel", "expire", "failure"}),
}
# Midtrans looks these payment types up by transaction_id, not order_id (DANA).
_LOOKUP_BY_TRANSACTION_ID = frozenset({"dana"})
# Midtrans's words for a transaction's state, in ours.
_CHARGES = {
    "pending": Charge.AWAITING,
    "authorize": Charge.AUTHORIZED,
    "settlement": Charge.PAID,
    "deny": Charge.DENIED,
    "failure": Charge.FAILED,
    "cancel": Charge.CANCELED,
    "expire": Charge.EXPIRED,
    "refund": Charge.REFUNDED,
    "partial_refund": Charge.PARTIALLY_REFUNDED,
    "chargeback": Charge.CHARGED_BACK,
    "partial_chargeback": Charge.PARTIALLY_CHARGED_BACK,
}
# Receipt fields by payment type, as Midtrans names them; nothing beyond what it sends.
_DETAIL_FIELDS = (
    "va_numbers",
    "permata_va_number",
    "bill_key",
    "biller_code",
    "store",
    "payment_code",
    "masked_card",
    "card_type",
    "bank",
    "approval_code",
    "issuer",
    "acquirer",
    "transaction_type",
    "expiry_time",
    "settlement_time",
    "qr_string",
)
# A wallet payment lists what it offers next as named `actions`; the receipt needs these two.
_ACTION_DETAILS = {"generate-qr-code": "qr_code_url", "deeplink-redirect": "deeplink_url"}
# Fields that make two deliveries the same notification.
_DEDUPE_FIELDS = (
    "order_id",
    "transaction_id",
    "transaction_status",
    "fraud_status",
    "status_code",
    "gross_amount",
    "settlement_time",
    "refund_amount",
)


def signature(order_id: str, status_code: str, gross_amount: str, server_key: str) -> str:
    """Midtrans's signature_key: SHA-512 over the raw strings, hex."""
    return hashlib.sha512((order_id + status_code + gross_amount + server_key).encode()).hexdigest()


def verify_signature(body: dict[str, Any], server_key: str) -> None:
    """Raise InvalidSignature unless signature_key matches the body's raw fields."""
    given = body.get("signature_key")
    if not isinstance(given, str) or not given:
        raise InvalidSignature("signature_key missing")
    if not all(isinstance(body.get(name), str) for name in _SIGNED):
        raise InvalidSignature("order_id, status_code or gross_amount missing or not a string")
    expected = signature(body["order_id"], body["status_code"], body["gross_amount"], server_key)
    # compare_digest refuses non-ASCII str, which no genuine signature contains.
    if not given.isascii() or not hmac.compare_digest(expected, given):
        raise InvalidSignature("signature_key does not match")


def read_notification(body: dict[str, Any]) -> NotificationHint:
    """Check that a signed notification's status_code fits its transaction_status."""
    status = body.get("transaction_status")
    if not isinstance(status, str) or not status:
        raise InvalidNotification("transaction_status missing")
    fitting = _STATUS_CODES.get(body["status_code"], frozenset())
    if status.lower() not in fitting:
        raise StatusMismatch(
            f"status_code {body['status_code'][:8]!r} does not go with "
            f"transaction_status {status[:32]!r}"
        )
    dedupe = hashlib.sha256("|".join(str(body.get(k, "")) for k in _DEDUPE_FIELDS).encode())
    return NotificationHint(
        order_id=body["order_id"],
        status_code=body["status_code"],
        gross_amount=body["gross_amount"],
        transaction_status=status.lower(),
        dedupe_key=dedupe.hexdigest(),
    )


def read_answer(body: dict[str, Any], gateway_order_id: str, server_key: str) -> Answer:
    """Read a status answer, refusing one about another order or with a wrong signature."""
    if body.get("order_id") != gateway_order_id:
        raise UntrustedAnswer(
            "core.status",
            f"answer is about order {str(body.get('order_id'))[:64]!r}, not {gateway_order_id!r}",
        )
    try:
        verify_signature(body, server_key)
    except InvalidSignature as exc:
        raise UntrustedAnswer("core.status", f"answer refused: {exc}") from None
    status = body.get("transaction_status")
    if not isinstance(status, str) or not status:
        raise UntrustedAnswer("core.status", "answer has no transaction_status")
    status = status.lower()
    fraud = _text(body.get("fraud_status"))
    charge = _charge(status, (fraud or "").lower())
    settled_at = midtrans_time(body.get("settlement_time"))
    details = {k: body[k] for k in _DETAIL_FIELDS if body.get(k) not in (None, "", [])}
    details.update(_action_details(body.get("actions")))
    try:
        return Answer(
            charge=charge,
            gross_amount=_amount(body["gross_amount"], "gross_amount"),
            original_amount=_original_amount(body),
            currency=_text(body.get("currency")),
            refunded=_refunded(body),
            payment_type=_text(body.get("payment_type")),
            transaction_id=_text(body.get("transaction_id")),
            paid_at=settled_at or midtrans_time(body.get("transaction_time")),
            details=details,
            gateway_status=f"{status}/{fraud}" if fraud else status,
        )
    except InvalidNotification as exc:
        raise UntrustedAnswer("core.status", f"answer refused: {exc}") from None


def _action_details(actions: object) -> dict[str, str]:
    """The QR image and app link among a wallet payment's actions, under our names."""
    found: dict[str, str] = {}
    for action in actions if isinstance(actions, list) else []:
        if not isinstance(action, dict) or not isinstance(action.get("url"), str):
            continue
        name = _ACTION_DETAILS.get(str(action.get("name")))
        if name:
            found[name] = action["url"]
    return found


def _charge(status: str, fraud: str) -> Charge:
    if fraud == "deny" and status in {"capture", "settlement", "pending"}:
        return Charge.FRAUD_DENIED
    if status == "capture":
        # A captured card is paid only once fraud screening accepts it.
        return Charge.HELD_FOR_REVIEW if fraud == "challenge" else Charge.PAID
    return _CHARGES.get(status, Charge.UNKNOWN)


def _refunded(body: dict[str, Any]) -> Decimal | None:
    """The refund total: refund_amount is cumulative; else the refunds list adds up."""
    total = _optional_amount(body.get("refund_amount"), "refund_amount")
    refunds = body.get("refunds")
    if total is None and isinstance(refunds, list) and refunds:
        amounts = [r.get("refund_amount") for r in refunds if isinstance(r, dict)]
        total = sum((_amount(a, "refund_amount") for a in amounts), Decimal(0))
    return total


def _original_amount(body: dict[str, Any]) -> Decimal | None:
    # With Automatic Fee Imposition, gross_amount includes the customer's fee and the amount
    # we asked for moves to metadata.extra_info.gross_amount_info.original_amount.
    info: object = body.get("metadata")
    for key in ("extra_info", "gross_amount_info"):
        info = info.get(key) if isinstance(info, dict) else None
    value = info.get("original_amount") if isinstance(info, dict) else None
    return _optional_amount(value, "original_amount")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _amount(value: object, name: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidNotification(f"{name} is not a number") from None
    if not amount.is_finite():
        raise InvalidNotification(f"{name} is not a number")
    return amount


def _optional_amount(value: object, name: str) -> Decimal | None:
    return None if value in (None, "") else _amount(value, name)
