"""Use cases of the payments domain; the only code that commits."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

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
from tiketq.payments import queries
from tiketq.payments.errors import IdempotencyKeyReused, PaymentConflict
from tiketq.payments.models import (
    Payment,
    PaymentEvent,
    utcnow,
)
from tiketq.payments.orders import ItemLine, gateway_order_id, normalise_items
from tiketq.payments.status import (
    PAID,
    PaymentStatus,
)

log = logging.getLogger(__name__)

# Longer than any gateway call may take (connect + read timeouts): a payment still without a
# token after this long was abandoned by a process that died mid-call.
CREATE_IN_FLIGHT = timedelta(seconds=60)


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

    def fingerprint(self) -> str:
        """A stable hash of the request, to tell a retry from a different request."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def create_payment(
    new: NewPayment,
    *,
    gateway: Gateway,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Payment:
    """Open a payment for an order, or return the live one a retried request already opened.

    The row is committed before Midtrans is called, so a timeout leaves a record that says
    so instead of a token nobody knows about.
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
            return keyed

    existing = queries.counted_attempt(new.order_id, lock=True)
    if existing is not None:
        replay = _reuse_or_end(existing, new, now)
        if replay is not None:
            return replay

    attempt = 1 + (
        db.session.scalar(
            sa.select(sa.func.max(Payment.attempt)).where(Payment.order_id == new.order_id)
        )
        or 0
    )
    payment = Payment(
        order_id=new.order_id,
        attempt=attempt,
        gateway_order_id=gateway_order_id(new.order_id, attempt),
        amount=new.amount,
        currency="IDR",
        status=PaymentStatus.PENDING,
        status_detail="creating",
        payment_method=new.payment_method,
        description=new.description,
        customer=dict(new.customer),
        items=[asdict(item) for item in items],
        expires_at=now + timedelta(hours=new.expiry_hours),
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        created_at=now,
        updated_at=now,
    )
    payment.events.append(
        PaymentEvent(to_status=PaymentStatus.PENDING, status_detail="creating", source="api")
    )
    db.session.add(payment)
    try:
        db.session.commit()
    except IntegrityError:
        # A concurrent request for the same order (or key) inserted first.
        db.session.rollback()
        winner = queries.counted_attempt(new.order_id, lock=False)
        if winner is not None and winner.amount == new.amount and winner.snap_token:
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
    db.session.commit()
    log.info(
        "payment created",
        extra={"payment_id": str(payment.id), "order_id": payment.order_id, "attempt": attempt},
    )
    return payment


def _reuse_or_end(existing: Payment, new: NewPayment, now: datetime) -> Payment | None:
    """Return the attempt a retry should get, or end it so that a new attempt can start."""
    if existing.status in PAID:
        raise PaymentConflict(
            f"order {new.order_id} is already paid",
            [{"field": "order_id", "message": f"payment {existing.id} is {existing.status}"}],
        )
    if existing.amount != new.amount:
        raise PaymentConflict(
            f"order {new.order_id} has a live payment of {existing.amount}, not {new.amount}",
            [
                {
                    "field": "amount",
                    "message": "differs from the live payment",
                    "live": existing.amount,
                }
            ],
        )
    if existing.is_expired(now):
        existing.transition_to(PaymentStatus.EXPIRED, source="api", detail="expired_before_retry")
    elif existing.snap_token:
        return existing
    elif now - existing.created_at < CREATE_IN_FLIGHT:
        raise PaymentConflict(
            "a payment for this order is being created; retry shortly",
            [{"field": "order_id", "message": "creation in progress"}],
        )
    else:
        existing.transition_to(PaymentStatus.FAILED, source="api", detail="create_abandoned")
    db.session.commit()
    return None


def _failure_detail(exc: GatewayError) -> str:
    if isinstance(exc, GatewayTimeout):
        return "gateway_timeout"
    if isinstance(exc, GatewayAuthError):
        return "gateway_auth_failed"
    if isinstance(exc, GatewayRejected):
        return "gateway_rejected"
    return "gateway_unavailable"
