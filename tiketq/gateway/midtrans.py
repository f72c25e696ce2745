"""The Midtrans adapter: the only module that knows midtransclient."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Any, TypeVar

import midtransclient
import requests
from midtransclient.config import ApiConfig
from midtransclient.error_midtrans import JSONDecodeError as MidtransJSONDecodeError

from tiketq.gateway import (
    Checkout,
    CheckoutRequest,
    GatewayAuthError,
    GatewayError,
    GatewayRejected,
    GatewayTimeout,
    GatewayTransaction,
    GatewayUnavailable,
    TransactionNotFound,
)

log = logging.getLogger(__name__)

WIB = timezone(timedelta(hours=7))

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

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
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

    def get_status(self, gateway_order_id: str) -> GatewayTransaction:
        """Read the Core API status of a transaction."""
        transactions = self._snap.transactions
        return _transaction(
            self._call("core.status", gateway_order_id, transactions.status, gateway_order_id)
        )

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

    def _call(self, operation: str, order_id: str, fn: Callable[..., T], *args: Any) -> T:
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
        level = logging.ERROR if kind in (GatewayAuthError, GatewayUnavailable) else logging.WARNING
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
            "start_time": request.starts_at.astimezone(WIB).strftime("%Y-%m-%d %H:%M:%S %z"),
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
    return body
