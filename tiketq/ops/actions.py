"""What staff do to a payment from its page, through the domain's use cases, recorded as "ops".

Every action leaves a payment_events row with source "ops" and the staff name in its data:
a status change (cancel, refund) carries them in its own event; an action that changes no
status (a check, a resolved review) adds an event of its own, the status and detail unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.payments import queries, reconcile, rules, service
from tiketq.payments.errors import InvalidTransition, PaymentNotFound
from tiketq.payments.models import Payment, Refund, utcnow
from tiketq.payments.status import OPEN, PaymentStatus, StatusDetail

SOURCE = "ops"


class Refused(Exception):
    """The payment is not in a state for this action; the message says why, for the page."""


@dataclass(frozen=True)
class Offers:
    """Which actions a payment's page offers, and what is left to refund."""

    cancel: bool
    refund: bool
    refund_attempt: bool
    refundable: bool
    left: int


@dataclass(frozen=True)
class RefundDone:
    """A refund as Midtrans granted it; `repeated` when an earlier confirmation had made it."""

    refund: Refund
    repeated: bool


def offers(payment: Payment, refunds: list[Refund]) -> Offers:
    """What staff may do to the payment now, as its page shows it."""
    left = payment.amount - payment.refunded_amount - _in_flight(refunds)
    return Offers(
        cancel=payment.status in OPEN,
        refund=payment.status is PaymentStatus.SUCCESS and left > 0,
        refund_attempt=payment.needs_review
        and rules.paid_late(payment.status, payment.status_detail)
        and left > 0,
        refundable=payment.payment_type in rules.REFUNDABLE_TYPES,
        left=left,
    )


def resolve_review(payment_id: uuid.UUID, *, staff: str, note: str) -> list[str]:
    """Close the payment's open review with a note; returns the reasons it was open for."""
    payment = _locked(payment_id)
    if not payment.needs_review:
        db.session.rollback()
        raise Refused("This payment has no open review.")
    reasons = queries.open_review_reasons(payment.id)
    _record(payment, StatusDetail.REVIEW_RESOLVED, staff=staff, note=note, reasons=reasons)
    payment.needs_review = False
    db.session.commit()
    return reasons


def check(payment_id: uuid.UUID, *, staff: str) -> Payment:
    """Ask Midtrans about the payment now, apply the answer, and record who asked."""
    checked = reconcile.check_now(payment_id, current_gateway())
    if checked is None:
        raise PaymentNotFound("Payment not found")
    # After the check's own commit: a check that found nothing new is in the history too.
    _record(checked, StatusDetail.CHECKED_BY_STAFF, staff=staff)
    db.session.commit()
    return checked


def plan_cancel(payment: Payment) -> None:
    """Raise unless the payment may be canceled, before staff are asked to confirm."""
    if payment.status not in OPEN:
        raise InvalidTransition(payment.status, PaymentStatus.CANCELED)


def cancel(payment_id: uuid.UUID, *, staff: str, reason: str | None) -> Payment:
    """Cancel an open payment at Midtrans and here, as the API does."""
    with _undone_on_failure():
        return service.cancel_payment(
            payment_id,
            gateway=current_gateway(),
            reason=reason,
            source=SOURCE,
            data={"staff": staff},
        )


def plan_refund(payment: Payment, requested: int | None) -> int:
    """The amount a refund would take (none asked: all that is left); raises if it is refused."""
    facts = rules.Facts(
        status=payment.status,
        amount=payment.amount,
        detail=payment.status_detail,
        refunded_amount=payment.refunded_amount,
    )
    return rules.refund_amount(
        rules.refund_facts(facts),
        payment_type=payment.payment_type,
        in_flight=_in_flight(queries.refunds_for(payment.id)),
        requested=requested,
    )


def refund(
    payment_id: uuid.UUID, *, staff: str, amount: int | None, reason: str, key: str
) -> RefundDone:
    """Refund the payment as the API does; the same confirmation `key` refunds once."""
    started = utcnow()
    with _undone_on_failure():
        made = service.refund_payment(
            payment_id,
            gateway=current_gateway(),
            amount=amount,
            reason=reason,
            request_key=f"ops:{key}",
            source=SOURCE,
            data={"staff": staff},
        )
    if made.status == "failed":
        # This confirmation was sent before, and Midtrans refused it then.
        raise Refused(f"Midtrans refused this refund before: {_messages(made)}.")
    return RefundDone(made, repeated=made.updated_at < started)


@contextmanager
def _undone_on_failure() -> Iterator[None]:
    """Roll back what a use case left unfinished when it raised, releasing its row lock."""
    try:
        yield
    except Exception:
        db.session.rollback()
        raise


def _locked(payment_id: uuid.UUID) -> Payment:
    payment = db.session.get(Payment, payment_id, with_for_update=True)
    if payment is None:
        raise PaymentNotFound("Payment not found")
    return payment


def _record(payment: Payment, detail: StatusDetail, *, staff: str, **data: Any) -> None:
    payment.remark(detail, source=SOURCE, data={"staff": staff, **data})


def _in_flight(refunds: list[Refund]) -> int:
    """Refunds stored but not answered by Midtrans yet: their money may be on its way back."""
    return sum(refund.amount for refund in refunds if refund.status == "requested")


def _messages(refund: Refund) -> str:
    messages = refund.gateway_response.get("messages") or ["no reason given"]
    return "; ".join(str(message) for message in messages)
