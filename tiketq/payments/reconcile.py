"""Asking Midtrans about open payments: the reconcile schedule, expiry, and checks on demand."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from tiketq.extensions import db
from tiketq.gateway import Gateway, GatewayError, GatewayUnavailable
from tiketq.payments.claims import each_isolated
from tiketq.payments.models import Payment, utcnow
from tiketq.payments.notifications import announce, apply_answer, fetch_answer, retry_delay
from tiketq.payments.status import OPEN, PaymentStatus, StatusDetail

log = logging.getLogger(__name__)


def refresh(payment: Payment, gateway: Gateway, *, source: str, now: datetime) -> bool:
    """Ask Midtrans about a row-locked open payment and apply the answer; True if it answered."""
    payment.checks += 1
    payment.last_checked_at = now
    try:
        answer = fetch_answer(payment, gateway)
    except GatewayError as exc:
        log.warning("reconcile deferred: %s", exc, extra={"payment_id": str(payment.id)})
        payment.schedule_check(now)
        return False
    if answer is not None:
        apply_answer(payment, answer, source=source, now=now)
    payment.schedule_check(now)
    return True


def reconcile_due(gateway: Gateway, *, now: datetime | None = None, limit: int = 50) -> int:
    """Check open payments whose next check is due; returns how many were checked."""
    now = now or utcnow()
    query = (
        sa.select(Payment)
        .where(Payment.next_check_at <= now, Payment.status.in_(sorted(OPEN)))
        .order_by(Payment.next_check_at)
    )

    def check_later(payment_id: object, _exc: Exception) -> None:
        payment = db.session.get(Payment, payment_id)
        if payment is not None:
            payment.checks += 1
            payment.next_check_at = now + retry_delay(payment.checks)

    return each_isolated(
        "reconcile",
        query,
        limit,
        lambda payment: refresh(payment, gateway, source="reconcile", now=now),
        check_later,
    )


def refresh_if_stale(
    payment_id: object, gateway: Gateway, *, min_interval: timedelta, now: datetime | None = None
) -> bool:
    """Refresh an open payment unless it was checked within `min_interval` or is being checked."""
    now = now or utcnow()
    payment = db.session.scalar(
        sa.select(Payment)
        .where(
            Payment.id == payment_id,
            Payment.status.in_(sorted(OPEN)),
            Payment.snap_token.is_not(None),
            sa.or_(
                Payment.last_checked_at.is_(None), Payment.last_checked_at <= now - min_interval
            ),
        )
        .with_for_update(skip_locked=True)
    )
    if payment is None:
        db.session.rollback()
        return False
    answered = refresh(payment, gateway, source="reconcile", now=now)
    db.session.commit()
    return answered


def check_now(
    payment_id: object, gateway: Gateway, *, now: datetime | None = None
) -> Payment | None:
    """Ask Midtrans about a payment at once, whatever its status, and apply the answer (staff)."""
    now = now or utcnow()
    payment = db.session.get(Payment, payment_id, with_for_update=True)
    if payment is None:
        db.session.rollback()
        return None
    answered = refresh(payment, gateway, source="ops", now=now)
    db.session.commit()
    if not answered:
        raise GatewayUnavailable("core.status", "Midtrans did not answer; try again shortly")
    return payment


def expire_overdue(gateway: Gateway, *, now: datetime | None = None, limit: int = 50) -> int:
    """Expire open payments past their time here and at Midtrans; returns how many expired."""
    now = now or utcnow()
    query = (
        sa.select(Payment)
        .where(Payment.expires_at <= now, Payment.status.in_(sorted(OPEN)))
        .order_by(Payment.expires_at)
    )
    expired: list[bool] = []
    # A payment whose expiry raised is tried again next round; the others go on meanwhile.
    each_isolated(
        "expiry",
        query,
        limit,
        lambda payment: expired.append(_expire(payment, gateway, now)),
        lambda _payment_id, _exc: None,
    )
    return sum(expired)


def _expire(payment: Payment, gateway: Gateway, now: datetime) -> bool:
    # A last-minute payment must win over expiry, so ask Midtrans first.
    try:
        answer = fetch_answer(payment, gateway)
    except GatewayError as exc:
        log.warning("expiry deferred: %s", exc, extra={"payment_id": str(payment.id)})
        return False
    if answer is not None:
        apply_answer(payment, answer, source="reconcile", now=now)
        if payment.status not in OPEN:
            return payment.status is PaymentStatus.EXPIRED
    try:
        if answer is not None:
            gateway.expire(payment.gateway_order_id)
        elif payment.snap_token:
            gateway.cancel_checkout(payment.snap_token)
    except GatewayError as exc:
        # Midtrans expires the transaction itself at the expiry we sent; a late payment is flagged.
        log.warning("midtrans expiry failed: %s", exc, extra={"payment_id": str(payment.id)})
    payment.transition_to(
        PaymentStatus.EXPIRED, source="expiry", detail=StatusDetail.EXPIRED_BY_WORKER
    )
    announce(payment)
    log.info("payment expired", extra={"payment_id": str(payment.id), "order_id": payment.order_id})
    return True
