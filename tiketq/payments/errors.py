"""Domain errors, in domain words; the API maps them to HTTP in one place."""

from __future__ import annotations


class PaymentError(Exception):
    """Base of every error the payments domain raises on purpose."""

    def __init__(self, detail: str, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class PaymentNotFound(PaymentError):
    """No payment has that id or order id."""


class InvalidOrder(PaymentError):
    """The order cannot be paid as described (amounts, items, ids)."""


class PaymentConflict(PaymentError):
    """The request conflicts with a payment that already exists for the order."""


class IdempotencyKeyReused(PaymentError):
    """An Idempotency-Key came back with a different request body."""


class InvalidTransition(PaymentError):
    """The status table forbids this change."""

    def __init__(self, current: object, new: object) -> None:
        super().__init__(f"a {current} payment cannot become {new}")
        self.current = current
        self.new = new
