"""Use cases of the payments domain for callers and travellers: create, retry, cancel, refund."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tiketq.extensions import db
from tiketq.gateway import (
    CheckoutRequest,
    Gateway,
    GatewayAuthError,
    GatewayError,
    GatewayRejected,
    GatewayTimeout,
)
from tiketq.payments import queries, rules
from tiketq.payments.errors import (
    IdempotencyKeyReused,
    InvalidTransition,
    PaymentConflict,
    PaymentNotFound,
)
from tiketq.payments.models import Payment, PaymentEvent, Refund, utcnow
from tiketq.payments.notifications import announce, apply_answer, carry_out, fetch_answer
from tiketq.payments.orders import ItemLine, gateway_order_id, normalise_items
from tiketq.payments.status import OPEN, PAID, PaymentStatus, StatusDetail

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewPayment:
    """A validated request to collect an order's amount."""

    order_id: str
    amount: int
    payment_method: str | None
    customer: dict[str, str]
    items: tuple[ItemLine, ...]
    description: str | None
    expiry_hours: int
    # The caller's page the traveller returns to; its host is checked against FINISH_URL_HOSTS.
    finish_url: str | None = None

    def fingerprint(self) -> str:
        """A stable hash of the request, to tell a retry from a different request."""
        fields = asdict(self)
        if self.finish_url is None:
            # Left out: a request without one keeps the fingerprint stored before the field existed.
            del fields["finish_url"]
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who asks for a payment, and so what they may learn and decide."""

    name: str | None
    # May get the order's live attempt back for a request that is not its own.
    may_read: bool = False
    # May open an attempt at another amount than the order's (staff keys only).
    may_change_amount: bool = False


# A caller without a key: it learns only what its own request made.
ANONYMOUS = Caller(None)
# The traveller holds the payment's unguessable id, which already shows the order.
TRAVELLER = Caller("traveller", may_read=True)


def create_payment(
    new: NewPayment,
    *,
    gateway: Gateway,
    idempotency_key: str | None = None,
    finish_url: Callable[[uuid.UUID], str] | None = None,
    caller: Caller = ANONYMOUS,
    now: datetime | None = None,
) -> Payment:
    """Open a payment for an order, or return the live one a retried request already opened.

    The row is committed before Midtrans is called, so a timeout leaves a record that says
    so instead of a token nobody knows about. `finish_url` names, for a payment id, our page
    Snap sends the traveller back to (which leads on to `new.finish_url`, the caller's page).
    """
    now = now or utcnow()
    fingerprint = new.fingerprint()
    items = normalise_items(new.order_id, new.amount, new.items)

    if idempotency_key is not None:
        keyed = db.session.scalar(
            sa.select(Payment).where(Payment.idempotency_key == idempotency_key)
        )
        if keyed is not None:
            if keyed.request_fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "Idempotency-Key was already used with a different request body"
                )
            # Without a token the attempt is still in flight or was abandoned by a process that
            # died mid-call: the order's rules below decide, as for a retry without the key.
            if keyed.snap_token or keyed.status not in OPEN:
                return keyed

    existing = queries.counted_attempt(new.order_id, lock=True)
    if existing is not None:
        replay = _reuse_or_end(existing, new, now)
        if replay is not None:
            _may_see(caller, replay, fingerprint, idempotency_key)
            return replay

    latest = queries.latest_for_order(new.order_id)
    attempt = 1 + (latest.attempt if latest else 0)
    changed = _amount_change(latest, new, caller)
    payment = Payment(
        order_id=new.order_id,
        attempt=attempt,
        gateway_order_id=gateway_order_id(new.order_id, attempt),
        amount=new.amount,
        currency="IDR",
        status=PaymentStatus.PENDING,
        status_detail=StatusDetail.CREATING,
        payment_method=new.payment_method,
        description=new.description,
        finish_url=new.finish_url,
        customer=dict(new.customer),
        items=[asdict(item) for item in items],
        expires_at=now + timedelta(hours=new.expiry_hours),
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        created_at=now,
        updated_at=now,
    )
    payment.events.append(
        PaymentEvent(
            to_status=PaymentStatus.PENDING,
            status_detail=StatusDetail.CREATING,
            source="api",
            data=changed or {},
        )
    )
    db.session.add(payment)
    try:
        db.session.commit()
    except IntegrityError:
        # A concurrent request for the same order (or key) inserted first.
        db.session.rollback()
        winner = queries.counted_attempt(new.order_id, lock=False)
        if winner is not None and winner.amount == new.amount and winner.snap_token:
            _may_see(caller, winner, fingerprint, idempotency_key)
            return winner
        raise PaymentConflict(
            "a payment for this order is being created; retry shortly",
            [{"field": "order_id", "message": "creation in progress"}],
        ) from None

    checkout_request = CheckoutRequest(
        gateway_order_id=payment.gateway_order_id,
        amount=payment.amount,
        items=items,
        customer=payment.customer,
        payment_method=payment.payment_method,
        starts_at=now,
        expires_in_minutes=new.expiry_hours * 60,
        finish_url=finish_url(payment.id) if finish_url else None,
    )
    try:
        checkout = gateway.create_checkout(checkout_request)
    except GatewayError as exc:
        payment.transition_to(
            PaymentStatus.FAILED,
            source="api",
            detail=_failure_detail(exc),
            data={"operation": exc.operation, "messages": exc.messages},
        )
        # The key stays usable: a retry with it should get a fresh attempt, not this failure.
        payment.idempotency_key = None
        db.session.commit()
        raise
    payment.snap_token = checkout.token
    payment.snap_redirect_url = checkout.redirect_url
    payment.status_detail = None
    payment.schedule_check(now)
    db.session.commit()
    log.info(
        "payment created",
        extra={"payment_id": str(payment.id), "order_id": payment.order_id, "attempt": attempt},
    )
    return payment


def _may_see(caller: Caller, payment: Payment, fingerprint: str, key: str | None) -> None:
    """Refuse to hand a caller another request's payment (its id, token and checkout page)."""
    if caller.may_read:
        return
    same_request = payment.request_fingerprint == fingerprint and (
        payment.idempotency_key is None or payment.idempotency_key == key
    )
    if not same_request:
        raise PaymentConflict(
            "this order already has a live payment, opened by another request; send that "
            "request again, or call with an API key, to get it",
            [{"field": "order_id", "message": "payment exists"}],
        )


def _amount_change(
    latest: Payment | None, new: NewPayment, caller: Caller
) -> dict[str, Any] | None:
    """The event data of a staff change of the order's amount; raises for anyone else."""
    if latest is None or latest.amount == new.amount:
        return None
    if not caller.may_change_amount:
        raise PaymentConflict(
            f"order {new.order_id} is for {latest.amount} {latest.currency}, not "
            f"{new.amount} IDR: every attempt at an order carries the same amount",
            [
                {
                    "field": "amount",
                    "message": "differs from the order's amount",
                    "order_amount": latest.amount,
                    "currency": latest.currency,
                    "requested": new.amount,
                }
            ],
        )
    return {"amount_changed": {"from": latest.amount, "to": new.amount}, "by": caller.name}


def _reuse_or_end(existing: Payment, new: NewPayment, now: datetime) -> Payment | None:
    """Return the attempt a retry should get, or end it so that a new attempt can start."""
    attempt = rules.Attempt(
        status=existing.status,
        amount=existing.amount,
        has_token=bool(existing.snap_token),
        created_at=existing.created_at,
        expires_at=existing.expires_at,
    )
    verdict = rules.reuse(attempt, order_id=new.order_id, amount=new.amount, now=now)
    if verdict is rules.Reuse.RETURN_IT:
        return existing
    if verdict is rules.Reuse.WAIT:
        raise PaymentConflict(
            "a payment for this order is being created; retry shortly",
            [{"field": "order_id", "message": "creation in progress"}],
        )
    if verdict is rules.Reuse.EXPIRE_IT:
        existing.transition_to(
            PaymentStatus.EXPIRED, source="api", detail=StatusDetail.EXPIRED_BEFORE_RETRY
        )
    else:
        existing.transition_to(
            PaymentStatus.FAILED, source="api", detail=StatusDetail.CREATE_ABANDONED
        )
    if existing.snap_token is None:
        # Never usable, as after a failed Snap call: a retry with its key gets the fresh attempt.
        existing.idempotency_key = None
    db.session.commit()
    return None


def _failure_detail(exc: GatewayError) -> StatusDetail:
    if isinstance(exc, GatewayTimeout):
        return StatusDetail.GATEWAY_TIMEOUT
    if isinstance(exc, GatewayAuthError):
        return StatusDetail.GATEWAY_AUTH_FAILED
    if isinstance(exc, GatewayRejected):
        return StatusDetail.GATEWAY_REJECTED
    return StatusDetail.GATEWAY_UNAVAILABLE


def retry_payment(
    payment_id: uuid.UUID,
    *,
    gateway: Gateway,
    finish_url: Callable[[uuid.UUID], str] | None = None,
    now: datetime | None = None,
) -> Payment:
    """Open a fresh attempt at an order whose attempt failed or ran out of time.

    Returns the order's paid or still live attempt instead, when it has one.
    """
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        raise PaymentNotFound("Payment not found")
    counted = queries.counted_attempt(payment.order_id)
    if counted is not None and counted.status in PAID:
        return counted
    if not rules.may_pay_again(payment.status, overdue=payment.is_expired(now or utcnow())):
        # Canceling is the caller's decision about the order; the traveller cannot undo it.
        raise PaymentConflict(
            f"a {payment.status} payment cannot be paid again",
            [{"field": "status", "message": str(payment.status)}],
        )
    return create_payment(
        _same_order(payment), gateway=gateway, finish_url=finish_url, caller=TRAVELLER, now=now
    )


def _same_order(payment: Payment) -> NewPayment:
    hours = rules.expiry_hours(payment.created_at, payment.expires_at)
    return NewPayment(
        order_id=payment.order_id,
        amount=payment.amount,
        payment_method=payment.payment_method,
        customer=dict(payment.customer),
        items=tuple(ItemLine(**item) for item in payment.items),
        description=payment.description,
        expiry_hours=hours,
        finish_url=payment.finish_url,
    )


def _locked(payment_id: uuid.UUID) -> Payment:
    payment = db.session.get(Payment, payment_id, with_for_update=True)
    if payment is None:
        raise PaymentNotFound("Payment not found")
    return payment


def cancel_payment(
    payment_id: uuid.UUID,
    *,
    gateway: Gateway,
    reason: str | None,
    source: str = "api",
    data: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Payment:
    """Cancel a payment that is not paid yet, at Midtrans and here; `data` goes in its event."""
    now = now or utcnow()
    payment = _locked(payment_id)
    if payment.status not in OPEN:
        raise InvalidTransition(payment.status, PaymentStatus.CANCELED)
    answer = fetch_answer(payment, gateway)
    if answer is not None:
        apply_answer(payment, answer, source=source, now=now)
        if payment.status not in OPEN:
            db.session.commit()
            raise InvalidTransition(payment.status, PaymentStatus.CANCELED)
        gateway.cancel(payment.gateway_order_id)
    elif payment.snap_token:
        gateway.cancel_checkout(payment.snap_token)
    payment.transition_to(
        PaymentStatus.CANCELED, source=source, data={"reason": reason, **(data or {})}
    )
    announce(payment)
    db.session.commit()
    log.info(
        "payment canceled", extra={"payment_id": str(payment.id), "order_id": payment.order_id}
    )
    return payment


def refund_payment(
    payment_id: uuid.UUID,
    *,
    gateway: Gateway,
    amount: int | None,
    reason: str,
    request_key: str | None,
    source: str = "api",
    data: Mapping[str, Any] | None = None,
) -> Refund:
    """Refund part or all of a settled (or paid-late) payment; the same request refunds once."""
    payment = _locked(payment_id)
    refund_key = _refund_key(payment, request_key)
    existing = db.session.scalar(sa.select(Refund).where(Refund.refund_key == refund_key))
    if existing is not None and existing.status != "requested":
        return existing
    late = rules.paid_late(payment.status, payment.status_detail)
    if existing is None:
        amount = rules.refund_amount(
            rules.refund_facts(_facts(payment)),
            payment_type=payment.payment_type,
            in_flight=_refunds_in_flight(payment),
            requested=amount,
        )
        existing = Refund(
            payment_id=payment.id, refund_key=refund_key, amount=amount, reason=reason
        )
        db.session.add(existing)
        # Stored before Midtrans is asked: a timeout is retried with the same refund_key.
        db.session.commit()
        payment = _locked(payment_id)
        if existing.status != "requested":
            # The same request, sent twice at once, got its answer while this one waited.
            return existing
    refund = existing
    try:
        answer = gateway.refund(
            payment.gateway_order_id,
            refund_key=refund.refund_key,
            amount=refund.amount,
            reason=reason,
        )
    except GatewayRejected as exc:
        refund.status = "failed"
        refund.gateway_response = {"messages": exc.messages}
        db.session.commit()
        raise
    refund.status = "succeeded"
    refund.gateway_response = answer.raw
    # A paid-late attempt keeps its status and flag, and announces nothing: the order never
    # counted this money as its payment.
    step = (
        rules.Step(payment.status, payment.status_detail)
        if late
        else rules.after_refund(_facts(payment), refund.amount)
    )
    payment.refunded_amount = min(payment.amount, payment.refunded_amount + refund.amount)
    recorded = replace(step, data={"refund_key": refund_key, **(data or {})})
    carry_out(payment, recorded, {"source": source})
    db.session.commit()
    return refund


def _facts(payment: Payment) -> rules.Facts:
    return rules.Facts(
        status=payment.status,
        amount=payment.amount,
        detail=payment.status_detail,
        refunded_amount=payment.refunded_amount,
    )


def _refund_key(payment: Payment, request_key: str | None) -> str:
    """Midtrans's refund_key: derived from the request, so a retried request refunds once."""
    if request_key is None:
        # Without a caller's key, an unfinished refund of this payment is the one being retried.
        pending = db.session.scalar(
            sa.select(Refund).where(Refund.payment_id == payment.id, Refund.status == "requested")
        )
        if pending is not None:
            return pending.refund_key
        count = db.session.execute(
            sa.select(sa.func.count()).select_from(Refund).where(Refund.payment_id == payment.id)
        ).scalar_one()
        request_key = f"#{count + 1}"
    digest = hashlib.sha256(f"{payment.id}:{request_key}".encode()).hexdigest()[:24]
    return f"{payment.gateway_order_id[:36]}-{digest}"[:64]


def _refunds_in_flight(payment: Payment) -> int:
    return (
        db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(Refund.amount), 0)).where(
                Refund.payment_id == payment.id, Refund.status == "requested"
            )
        )
        or 0
    )
