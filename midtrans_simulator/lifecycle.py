"""Midtrans's transaction status cycle, applied to stored transactions in place."""

import secrets
import uuid
from datetime import datetime
from typing import Literal

from .methods import REFUNDABLE_PAYMENT_TYPES, REVERSIBLE_CODES, Method
from .store import Refund, Transaction

OUTCOMES = ("pending", "settlement", "capture", "challenge", "deny", "expire", "cancel", "failure")
CARD_ONLY_OUTCOMES = frozenset(("capture", "challenge"))

_STATUS_CODES = {
    "pending": "201",
    "authorize": "200",
    "capture": "200",
    "settlement": "200",
    "refund": "200",
    "partial_refund": "200",
    "chargeback": "200",
    "partial_chargeback": "200",
    "deny": "202",
    "cancel": "202",
    "failure": "202",
    "expire": "407",
}
_NEXT_STATUSES = {
    "pending": {
        "pending",
        "authorize",
        "capture",
        "settlement",
        "deny",
        "cancel",
        "expire",
        "failure",
    },
    "authorize": {"capture", "cancel", "deny", "expire"},
    "capture": {"settlement", "cancel"},
    "settlement": {"refund", "partial_refund", "chargeback", "partial_chargeback", "deny"},
    "partial_refund": {"refund", "partial_refund"},
    "partial_chargeback": {"chargeback", "partial_chargeback"},
}
_CARD_ONLY_STATUSES = frozenset(("authorize", "capture"))
TRANSITION_TARGETS = frozenset(status for targets in _NEXT_STATUSES.values() for status in targets)


class IllegalMove(Exception):
    """A change Midtrans would not make from the transaction's current state."""


class InvalidAmount(Exception):
    """A refund amount that is not positive or exceeds what is left to refund."""


def status_code(txn: Transaction) -> str:
    """Return the Core API `status_code` describing the transaction's current state."""
    assert txn.transaction_status is not None
    if txn.transaction_status == "capture" and txn.fraud_status == "challenge":
        return "201"  # captured but held for review, which Midtrans reports like a pending payment
    return _STATUS_CODES[txn.transaction_status]


def notification_status_code(txn: Transaction) -> str:
    """Return the `status_code` Midtrans puts in an HTTP notification about the current state."""
    # Notifications report an expiry as 202 like other failed payments; only Core API says 407.
    if txn.transaction_status == "expire":
        return "202"
    return status_code(txn)


def choose_method(txn: Transaction, method: Method, outcome: str, now: datetime) -> None:
    """Apply a traveller's Snap payment with `method` and the simulated `outcome`."""
    if txn.snap_canceled_at is not None:
        raise IllegalMove("the Snap session was canceled")
    # Snap keeps its page open after a denied card: the traveller may still pay another way.
    if txn.transaction_status not in (None, "pending", "deny"):
        raise IllegalMove(f"the transaction is already {txn.transaction_status}")
    if outcome in CARD_ONLY_OUTCOMES and not method.is_card:
        raise IllegalMove(f"outcome {outcome} applies to credit_card only")
    if txn.payment_method != method.code:
        # Picking another method in Snap replaces the pending payment instructions.
        txn.payment_method = method.code
        txn.payment_type = method.payment_type
        txn.method_fields = method.details(txn.request)
        txn.transaction_time = now
    status, fraud_status = _payment_result(txn, method, outcome)
    txn.fraud_status = fraud_status
    _set_status(txn, status, now)


def transition(txn: Transaction, target: str, now: datetime, *, amount: int | None = None) -> None:
    """Move an existing transaction to `target` along Midtrans's status cycle.

    `refund` refunds what is left; `partial_refund` refunds `amount`, which must leave something.
    """
    current = txn.transaction_status
    if current is None:
        raise IllegalMove("no payment method has been chosen yet")
    if target not in _NEXT_STATUSES.get(current, ()):
        raise IllegalMove(f"{current} cannot become {target}")
    card = txn.payment_type == "credit_card"
    if target in _CARD_ONLY_STATUSES and not card:
        raise IllegalMove(f"only card payments can become {target}")
    if current == "pending" and target == "settlement" and card:
        raise IllegalMove("a card payment is captured before it settles")
    if current == "settlement" and target == "deny" and txn.payment_method not in REVERSIBLE_CODES:
        raise IllegalMove(f"a settled {txn.payment_method} payment cannot be reversed")
    if target == "refund":
        _add_refund(txn, txn.gross_amount - txn.refunded_amount, None, None, "online", now)
    elif target == "partial_refund":
        if amount is None or amount >= txn.gross_amount - txn.refunded_amount:
            raise InvalidAmount("a partial refund needs an amount below what is left to refund")
        _add_refund(txn, amount, None, None, "online", now)
    else:
        _set_status(txn, target, now)


def cancel(txn: Transaction, now: datetime) -> None:
    """Void a transaction that has not settled (Core API cancel)."""
    if txn.transaction_status not in ("pending", "capture", "authorize"):
        raise IllegalMove("only pending, captured or authorized transactions can be canceled")
    _set_status(txn, "cancel", now)


def expire(txn: Transaction, now: datetime) -> None:
    """Expire a pending transaction (Core API expire)."""
    if txn.transaction_status != "pending":
        raise IllegalMove("only pending transactions can be expired")
    _set_status(txn, "expire", now)


def review_challenge(txn: Transaction, approve: bool) -> None:
    """Accept or deny a card capture that the fraud check challenged."""
    if txn.transaction_status != "capture" or txn.fraud_status != "challenge":
        raise IllegalMove("only challenged captures can be approved or denied")
    if approve:
        txn.fraud_status = "accept"
    else:
        txn.transaction_status = txn.fraud_status = "deny"


def cancel_snap_session(txn: Transaction, now: datetime) -> None:
    """Close the Snap page; a payment still waiting for the traveller is voided with it."""
    # These messages are the error_messages Midtrans answers this call with.
    if txn.snap_canceled_at is not None:
        raise IllegalMove("token already canceled")
    if txn.transaction_status not in (None, "pending"):
        raise IllegalMove("Transaction is on progress")
    txn.snap_canceled_at = now
    if txn.transaction_status == "pending":
        _set_status(txn, "cancel", now)


def refund(
    txn: Transaction,
    *,
    amount: int | None,
    refund_key: str | None,
    reason: str | None,
    method: Literal["online", "direct"],
    now: datetime,
) -> Refund:
    """Refund a settled transaction; a known refund_key returns its earlier refund instead."""
    if refund_key is not None:
        earlier = txn.find_refund(refund_key)
        if earlier is not None:
            return earlier
    if txn.transaction_status not in ("settlement", "partial_refund"):
        raise IllegalMove("only settled transactions can be refunded")
    if txn.payment_type not in REFUNDABLE_PAYMENT_TYPES:
        raise IllegalMove(f"{txn.payment_type} payments cannot be refunded")
    remaining = txn.gross_amount - txn.refunded_amount
    if amount is None:
        amount = remaining
    if not 0 < amount <= remaining:
        raise InvalidAmount(f"refund amount must be between 1 and {remaining}")
    return _add_refund(txn, amount, refund_key, reason, method, now)


def status_after(txn: Transaction, refund: Refund) -> str:
    """Return the status the transaction reached right after `refund` was granted."""
    index = txn.refunds.index(refund)
    refunded = sum(earlier.amount for earlier in txn.refunds[: index + 1])
    return "refund" if refunded >= txn.gross_amount else "partial_refund"


def _payment_result(txn: Transaction, method: Method, outcome: str) -> tuple[str, str | None]:
    """Map a simulated outcome to (transaction_status, fraud_status) for `method`."""
    if method.is_card:
        if outcome in ("settlement", "capture"):
            options = txn.request.get("credit_card")
            pre_authorised = isinstance(options, dict) and options.get("type") == "authorize"
            return ("authorize" if pre_authorised else "capture"), "accept"
        if outcome == "challenge":
            return "capture", "challenge"
        if outcome == "deny":
            return "deny", "deny"
        return outcome, "accept"
    # Convenience stores report no fraud check at all.
    return outcome, (None if method.payment_type == "cstore" else "accept")


def _set_status(txn: Transaction, status: str, now: datetime) -> None:
    txn.transaction_status = status
    if status == "settlement":
        txn.settlement_time = now


def _add_refund(
    txn: Transaction,
    amount: int,
    refund_key: str | None,
    reason: str | None,
    method: Literal["online", "direct"],
    now: datetime,
) -> Refund:
    granted = Refund(
        refund_chargeback_id=100000 + secrets.randbelow(900000),
        amount=amount,
        refund_key=refund_key or str(uuid.uuid4()),
        reason=reason,
        method=method,
        created_at=now,
    )
    txn.refunds.append(granted)
    txn.transaction_status = status_after(txn, granted)
    return granted
