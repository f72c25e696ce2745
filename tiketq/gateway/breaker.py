"""A circuit breaker in front of the gateway: when Midtrans keeps failing, fail fast for a while.

Every Midtrans call holds a gunicorn thread for up to the read timeout. When Midtrans is slow or
down, a few creates a second would soon hold every thread, and notifications, reads and health
checks would queue behind them. After `threshold` timeouts or outages in a row, calls fail at once
with GatewayUnavailable for `cooldown` seconds; then one call is let through to see whether
Midtrans is back, while the others keep failing fast until it answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tiketq.gateway import (
    Answer,
    Checkout,
    CheckoutRequest,
    Gateway,
    GatewayError,
    GatewayTimeout,
    GatewayTransaction,
    GatewayUnavailable,
    NotificationHint,
)
from tiketq.metrics import MIDTRANS_ERRORS

log = logging.getLogger(__name__)

T = TypeVar("T")


class CircuitBreaker:
    """The Gateway port, passed through to another gateway while that one keeps answering."""

    def __init__(
        self,
        inner: Gateway,
        *,
        threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        # While clock() is before this, calls fail without reaching Midtrans.
        self._open_until = 0.0

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Open a payment page for one attempt."""
        return self._guard("snap.create", self._inner.create_checkout, request)

    def verify_notification(self, body: dict[str, Any]) -> NotificationHint:
        """Check a notification's signature and shape: local work, never refused."""
        return self._inner.verify_notification(body)

    def cancel_checkout(self, token: str) -> None:
        """Close a payment page on which no method was chosen yet."""
        return self._guard("snap.cancel", self._inner.cancel_checkout, token)

    def get_status(
        self,
        gateway_order_id: str,
        *,
        transaction_id: str | None = None,
        payment_type: str | None = None,
    ) -> Answer:
        """The gateway's verified word on a transaction."""
        return self._guard(
            "core.status",
            lambda: self._inner.get_status(
                gateway_order_id, transaction_id=transaction_id, payment_type=payment_type
            ),
        )

    def cancel(self, gateway_order_id: str) -> GatewayTransaction:
        """Cancel a transaction that is not paid yet."""
        return self._guard("core.cancel", self._inner.cancel, gateway_order_id)

    def expire(self, gateway_order_id: str) -> GatewayTransaction:
        """Expire a pending transaction now."""
        return self._guard("core.expire", self._inner.expire, gateway_order_id)

    def refund(
        self, gateway_order_id: str, *, refund_key: str, amount: int, reason: str
    ) -> GatewayTransaction:
        """Refund part or all of a settled transaction, once per refund_key."""
        return self._guard(
            "core.refund",
            lambda: self._inner.refund(
                gateway_order_id, refund_key=refund_key, amount=amount, reason=reason
            ),
        )

    def _guard(self, operation: str, call: Callable[..., T], *args: Any) -> T:
        self._admit(operation)
        try:
            result = call(*args)
        except (GatewayTimeout, GatewayUnavailable):
            self._failed(operation)
            raise
        except GatewayError:
            # Midtrans answered (a refusal, "not found"): it is up.
            self._answered()
            raise
        self._answered()
        return result

    def _admit(self, operation: str) -> None:
        with self._lock:
            now = self._clock()
            if now < self._open_until:
                MIDTRANS_ERRORS.labels(operation, "CircuitOpen").inc()
                raise GatewayUnavailable(
                    operation,
                    f"not asked: Midtrans failed {self._failures} times in a row; "
                    f"next try in {self._open_until - now:.0f} s",
                )
            if self._threshold and self._failures >= self._threshold:
                # This call tries Midtrans; the others fail fast until it has an answer.
                self._open_until = now + self._cooldown

    def _failed(self, operation: str) -> None:
        with self._lock:
            self._failures += 1
            if self._threshold and self._failures >= self._threshold:
                if self._failures == self._threshold:
                    log.error(
                        "midtrans circuit open: %d failures in a row (last: %s); "
                        "calls fail at once for %.0f s",
                        self._failures,
                        operation,
                        self._cooldown,
                    )
                self._open_until = self._clock() + self._cooldown

    def _answered(self) -> None:
        with self._lock:
            if self._threshold and self._failures >= self._threshold:
                log.warning("midtrans circuit closed: Midtrans answers again")
            self._failures = 0
            self._open_until = 0.0
