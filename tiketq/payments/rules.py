"""Every money rule: what Midtrans's answer, a refund or a retry means for a payment; pure Python.

The use cases gather the facts, ask a function here for a decision and carry it out, so that
each rule can be table-tested without an app, a database or a gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tiketq.payments.errors import InvalidOrder, InvalidTransition, PaymentConflict
from tiketq.payments.status import (
    OPEN,
    PAID,
    NotificationOutcome,
    PaymentStatus,
    StatusDetail,
    can_transition,
)


class Charge(StrEnum):
    """What the gateway says became of the money, in our words (the adapter translates)."""

    AWAITING = "awaiting"  # the traveller has a VA number, a QR or a 3DS page, and has not paid
    AUTHORIZED = "authorized"  # a card hold, not captured
    HELD_FOR_REVIEW = "held_for_review"  # captured, held by the fraud check
    PAID = "paid"
    DENIED = "denied"
    FRAUD_DENIED = "fraud_denied"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    CHARGED_BACK = "charged_back"
    PARTIALLY_CHARGED_BACK = "partially_charged_back"
    UNKNOWN = "unknown"  # a state this service does not know; recorded, never applied


@dataclass(frozen=True)
class Answer:
    """The gateway's own answer about one transaction, fetched by us and verified."""

    charge: Charge
    gross_amount: Decimal  # what the traveller was charged, any gateway fee included
    original_amount: Decimal | None = None  # what we asked for, when the gateway added a fee
    currency: str | None = "IDR"
    refunded: Decimal | None = None  # the refunds so far, in total
    payment_type: str | None = None
    transaction_id: str | None = None
    paid_at: datetime | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    # The gateway's own word for the state, kept for the record and the logs.
    gateway_status: str | None = None

    def charged_amount(self) -> Decimal:
        """The amount the order was charged, before any gateway fee."""
        return self.original_amount if self.original_amount is not None else self.gross_amount


@dataclass(frozen=True)
class Facts:
    """What the service knows about a payment when an answer arrives."""

    status: PaymentStatus
    amount: int
    detail: str | None = None
    refunded_amount: int = 0
    # Another attempt of the same order is open or paid (a payment here would be a second one).
    other_attempt_counts: bool = False


@dataclass(frozen=True)
class Step:
    """One change to record: a new status (or the same one, annotated) and why."""

    status: PaymentStatus
    detail: str | None = None
    review: bool = False
    data: Mapping[str, Any] | None = None
    # The outbox event this step announces to other services, if any.
    announce: str | None = None
    # The step books the money as received: paid_at is set from the answer.
    paid: bool = False


@dataclass(frozen=True)
class Decision:
    """What to do with a payment given an answer: steps in order, refund total, details."""

    outcome: NotificationOutcome
    reason: str | None = None
    steps: tuple[Step, ...] = ()
    refunded_amount: int | None = None
    # Copy the answer's payment type, transaction id and receipt details onto the payment.
    keep_details: bool = False


# Changes other services hear about, by the status a payment reaches.
ANNOUNCED = {
    PaymentStatus.SUCCESS: "payment.succeeded",
    PaymentStatus.FAILED: "payment.failed",
    PaymentStatus.EXPIRED: "payment.expired",
    PaymentStatus.CANCELED: "payment.canceled",
    PaymentStatus.REFUNDED: "payment.refunded",
}


@dataclass(frozen=True)
class _Target:
    status: PaymentStatus
    detail: StatusDetail | None = None
    review: bool = False


_TARGETS: dict[Charge, _Target] = {
    Charge.AWAITING: _Target(PaymentStatus.PENDING),
    Charge.AUTHORIZED: _Target(PaymentStatus.PROCESSING, StatusDetail.AUTHORIZED),
    Charge.HELD_FOR_REVIEW: _Target(
        PaymentStatus.PROCESSING, StatusDetail.FRAUD_CHALLENGE, review=True
    ),
    Charge.PAID: _Target(PaymentStatus.SUCCESS),
    Charge.DENIED: _Target(PaymentStatus.FAILED, StatusDetail.DENIED),
    Charge.FRAUD_DENIED: _Target(PaymentStatus.FAILED, StatusDetail.FRAUD_DENIED),
    Charge.FAILED: _Target(PaymentStatus.FAILED, StatusDetail.FAILURE),
    Charge.CANCELED: _Target(PaymentStatus.CANCELED),
    Charge.EXPIRED: _Target(PaymentStatus.EXPIRED),
    Charge.REFUNDED: _Target(PaymentStatus.REFUNDED),
    Charge.PARTIALLY_REFUNDED: _Target(PaymentStatus.SUCCESS, StatusDetail.PARTIAL_REFUND),
    Charge.CHARGED_BACK: _Target(PaymentStatus.REFUNDED, StatusDetail.CHARGEBACK, review=True),
    Charge.PARTIALLY_CHARGED_BACK: _Target(
        PaymentStatus.SUCCESS, StatusDetail.PARTIAL_CHARGEBACK, review=True
    ),
}

_PAID_LATE = {
    PaymentStatus.CANCELED: StatusDetail.PAID_AFTER_CANCEL,
    PaymentStatus.EXPIRED: StatusDetail.PAID_AFTER_EXPIRY,
}


# Money Midtrans took for an attempt after it had ended unpaid: flagged, and refundable in full.
PAID_LATE = frozenset(
    {StatusDetail.PAID_TWICE, StatusDetail.PAID_AFTER_EXPIRY, StatusDetail.PAID_AFTER_CANCEL}
)


def paid_late(status: PaymentStatus, detail: str | None) -> bool:
    """Tell whether an attempt that ended unpaid was paid at Midtrans all the same."""
    return status not in PAID and detail in PAID_LATE


def refund_facts(facts: Facts) -> Facts:
    """The facts a refund is judged on: a paid-late attempt holds settled money at Midtrans."""
    if paid_late(facts.status, facts.detail):
        return replace(facts, status=PaymentStatus.SUCCESS)
    return facts


def decide(facts: Facts, answer: Answer) -> Decision:
    """Decide what the gateway's answer means for a payment; the status table has the last word."""
    target = _TARGETS.get(answer.charge)
    if target is None:
        return Decision(
            NotificationOutcome.UNSUPPORTED, f"unknown gateway status {answer.gateway_status!r}"
        )

    # A gateway fee only ever adds to what was charged: less than the amount is never paid.
    underpaid = answer.gross_amount < facts.amount
    if answer.currency not in (None, "IDR") or answer.charged_amount() != facts.amount or underpaid:
        return _amount_mismatch(facts, answer, target)

    if target.status is PaymentStatus.SUCCESS and facts.status not in PAID | OPEN:
        if facts.status is not PaymentStatus.FAILED or facts.other_attempt_counts:
            # The money arrived where nobody expects it any more: a person refunds or keeps it.
            reason = _PAID_LATE.get(facts.status, StatusDetail.PAID_TWICE)
            step = Step(facts.status, reason, review=True, data={"needs_refund": True})
            return Decision(NotificationOutcome.FLAGGED, reason, (step,))

    refunded = _refunded(facts, answer, target)
    if target.status is facts.status:
        new_detail = target.detail is not None and target.detail != facts.detail
        if not new_detail and refunded in (None, facts.refunded_amount):
            # Nothing new for the status, but a pending answer carries what the traveller must
            # do (a VA number, a QR): the receipt shows it.
            return Decision(NotificationOutcome.DUPLICATE, keep_details=True)
        detail = target.detail or facts.detail
        step = Step(facts.status, detail, review=target.review)
        return Decision(NotificationOutcome.APPLIED, detail, (step,), refunded, keep_details=True)

    steps: list[Step] = []
    current = facts.status
    if target.status is PaymentStatus.REFUNDED and current is PaymentStatus.FAILED:
        if facts.detail == StatusDetail.PAID_TWICE and refunded == facts.refunded_amount:
            # Midtrans telling of the refund staff made of this attempt: booked already.
            return Decision(NotificationOutcome.DUPLICATE)
        if facts.other_attempt_counts:
            # Money for a second attempt, already on its way back: a person checks both.
            step = Step(current, StatusDetail.PAID_TWICE, review=True)
            return Decision(NotificationOutcome.FLAGGED, StatusDetail.PAID_TWICE, (step,))
    if target.status is PaymentStatus.REFUNDED and current in OPEN | {PaymentStatus.FAILED}:
        # A refund that overtook its settlement proves the payment was made: book it first, so
        # history and messages read as if both came in order.
        steps.append(_move_to(_TARGETS[Charge.PAID]))
        current = PaymentStatus.SUCCESS

    if not can_transition(current, target.status):
        if current in PAID and target.status is PaymentStatus.FAILED:
            # Permata, Mandiri bill and Indomaret can rarely reverse a settlement within minutes.
            reason = StatusDetail.REVERSED_AFTER_SETTLEMENT
            step = Step(current, reason, review=True)
            return Decision(NotificationOutcome.FLAGGED, reason, (step,))
        return Decision(
            NotificationOutcome.STALE, f"{facts.status} does not go back to {target.status}"
        )

    steps.append(_move_to(target))
    return Decision(
        NotificationOutcome.APPLIED, target.detail, tuple(steps), refunded, keep_details=True
    )


def _move_to(target: _Target) -> Step:
    return Step(
        target.status,
        target.detail,
        review=target.review,
        announce=ANNOUNCED.get(target.status),
        paid=target.status is PaymentStatus.SUCCESS,
    )


def _amount_mismatch(facts: Facts, answer: Answer, target: _Target) -> Decision:
    """Money of another amount never counts as paid: hold the payment for a person."""
    detail = StatusDetail.AMOUNT_MISMATCH
    data = {"gross_amount": str(answer.gross_amount), "currency": answer.currency}
    reason = f"{answer.charged_amount()} {answer.currency or ''} != {facts.amount}".strip()
    if target.status in PAID and facts.status is PaymentStatus.PENDING:
        step = Step(PaymentStatus.PROCESSING, detail, review=True, data=data)
    else:
        step = Step(facts.status, detail, review=True, data=data)
    return Decision(NotificationOutcome.AMOUNT_MISMATCH, reason, (step,))


def _refunded(facts: Facts, answer: Answer, target: _Target) -> int | None:
    """The refund total the answer proves, never more than the amount nor less than booked."""
    if answer.refunded is not None:
        proven = min(facts.amount, int(answer.refunded))
    elif target.status is PaymentStatus.REFUNDED:
        proven = facts.amount
    else:
        return None
    return max(proven, facts.refunded_amount)


# Midtrans refunds only these payment types, and only once settled; VA and store payments are
# refunded outside Midtrans.
REFUNDABLE_TYPES = frozenset(
    {"credit_card", "gopay", "shopeepay", "dana", "ovo", "qris", "kredivo", "akulaku"}
)


def refund_amount(
    facts: Facts, *, payment_type: str | None, in_flight: int, requested: int | None
) -> int:
    """The amount a new refund takes (all that is left when none is asked); raises if refused."""
    if facts.status is not PaymentStatus.SUCCESS:
        raise InvalidTransition(facts.status, PaymentStatus.REFUNDED)
    if payment_type not in REFUNDABLE_TYPES:
        raise PaymentConflict(
            f"{payment_type or 'this'} payments cannot be refunded through Midtrans",
            [{"field": "payment_type", "refundable": sorted(REFUNDABLE_TYPES)}],
        )
    remaining = facts.amount - facts.refunded_amount - in_flight
    amount = remaining if requested is None else requested
    if not 0 < amount <= remaining:
        raise InvalidOrder(
            f"refund of {amount} exceeds the {remaining} left to refund",
            [{"field": "amount", "remaining": remaining}],
        )
    return amount


def after_refund(facts: Facts, refund: int) -> Step:
    """The step a granted refund of `refund` makes: refunded once nothing is left."""
    if facts.refunded_amount + refund >= facts.amount:
        return Step(PaymentStatus.REFUNDED, announce=ANNOUNCED[PaymentStatus.REFUNDED])
    return Step(facts.status, StatusDetail.PARTIAL_REFUND)


class Reuse(StrEnum):
    """What a new create for an order does with the order's attempt that still counts."""

    RETURN_IT = "return_it"  # a retry of the same request: the caller gets the live attempt
    WAIT = "wait"  # the attempt is still being created
    EXPIRE_IT = "expire_it"  # its time ran out: end it and open a new attempt
    ABANDON_IT = "abandon_it"  # its create died mid-call: end it and open a new attempt


# Longer than any gateway call may take (connect + read timeouts): a payment still without a
# token after this long was abandoned by a process that died mid-call.
CREATE_IN_FLIGHT = timedelta(seconds=60)


@dataclass(frozen=True)
class Attempt:
    """An order's attempt that is open or paid, as a new create meets it."""

    status: PaymentStatus
    amount: int
    has_token: bool
    created_at: datetime
    expires_at: datetime


def reuse(attempt: Attempt, *, order_id: str, amount: int, now: datetime) -> Reuse:
    """Decide what a create for the order does with its counted attempt; raises if refused."""
    if attempt.status in PAID:
        raise PaymentConflict(
            f"order {order_id} is already paid",
            [{"field": "order_id", "message": f"payment is {attempt.status}"}],
        )
    if attempt.amount != amount:
        raise PaymentConflict(
            f"order {order_id} has a live payment of {attempt.amount}, not {amount}",
            [
                {
                    "field": "amount",
                    "message": "differs from the live payment",
                    "live": attempt.amount,
                }
            ],
        )
    if now >= attempt.expires_at:
        return Reuse.EXPIRE_IT
    if attempt.has_token:
        return Reuse.RETURN_IT
    if now - attempt.created_at < CREATE_IN_FLIGHT:
        return Reuse.WAIT
    return Reuse.ABANDON_IT


# Attempts from which the traveller may start paying again.
PAYABLE_AGAIN = frozenset({PaymentStatus.FAILED, PaymentStatus.EXPIRED})


def may_pay_again(status: PaymentStatus, *, overdue: bool) -> bool:
    """Whether the traveller may open a new attempt from this one (never after a cancel)."""
    return status in PAYABLE_AGAIN or (overdue and status in OPEN)


def expiry_hours(created_at: datetime, expires_at: datetime) -> int:
    """An attempt's time to pay, in whole hours, for the next attempt of the same order."""
    return max(1, round((expires_at - created_at).total_seconds() / 3600))
