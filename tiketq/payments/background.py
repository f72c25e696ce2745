"""Use cases the worker runs: reconcile, expire, deliver the outbox (the inbox: notifications).

Every batch claims its rows with FOR UPDATE SKIP LOCKED, so workers on several machines share the
work through PostgreSQL and never do the same row twice; each row is committed on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from tiketq.extensions import db
from tiketq.gateway import Gateway, GatewayError, GatewayUnavailable
from tiketq.outbound import Outbound
from tiketq.payments import schedule
from tiketq.payments.models import (
    Delivery,
    DeliveryStatus,
    OutboxMessage,
    Payment,
    WorkerHeartbeat,
    utcnow,
    work_failed,
)
from tiketq.payments.notifications import announce, apply_answer, fetch_answer, retry_delay
from tiketq.payments.status import OPEN, PaymentStatus, StatusDetail

log = logging.getLogger(__name__)


def _claim_each(query: sa.Select, limit: int) -> Iterator[Any]:
    """Yield up to `limit` rows, each locked alone; the caller commits each before the next.

    One row per claim: a commit releases every lock the transaction holds, so claiming a batch
    and committing row by row would hand the rest of the batch to other workers mid-way.
    """
    entity = query.column_descriptions[0]["entity"]
    done: list[Any] = []
    for _ in range(limit):
        narrowed = query.where(entity.id.not_in(done)) if done else query
        row = db.session.scalar(narrowed.limit(1).with_for_update(skip_locked=True))
        if row is None:
            db.session.rollback()
            return
        done.append(row.id)
        yield row


def _each_isolated(
    job: str,
    query: sa.Select,
    limit: int,
    work: Callable[[Any], object],
    on_failure: Callable[[Any, Exception], None],
) -> int:
    """Run `work` on each claimed row and commit it; a row that raises is set aside, not fatal.

    A lost database is the exception: it ends the job, which the next round runs again.
    """
    handled = 0
    for row in _claim_each(query, limit):
        row_id = row.id
        handled += 1
        try:
            work(row)
            db.session.commit()
        except OperationalError:
            raise
        except Exception as exc:
            db.session.rollback()
            log.error("%s failed for row %s: %s", job, row_id, exc, exc_info=exc)
            work_failed.send(job, error=exc)
            on_failure(row_id, exc)
            db.session.commit()
    return handled


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

    return _each_isolated(
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
    _each_isolated(
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


def dispatch_outbox(outbound: Outbound, *, now: datetime | None = None, limit: int = 100) -> int:
    """Turn new outbox messages into one delivery per destination."""
    now = now or utcnow()
    query = (
        sa.select(OutboxMessage)
        .where(OutboxMessage.dispatched_at.is_(None))
        .order_by(OutboxMessage.id)
    )
    messages = list(db.session.scalars(query.limit(limit).with_for_update(skip_locked=True)))
    dispatched = 0
    for message in messages:
        try:
            with db.session.begin_nested():
                _dispatch(message, outbound, now)
        except OperationalError:
            raise
        except Exception as exc:
            # Left undispatched: the next round tries it again, the others go out now.
            log.error("dispatch failed for message %s: %s", message.id, exc, exc_info=exc)
            work_failed.send("dispatch", error=exc)
            continue
        dispatched += 1
    db.session.commit()
    return dispatched


def _dispatch(message: OutboxMessage, outbound: Outbound, now: datetime) -> None:
    for destination in outbound.destinations(message.event_type, message.payload["order_id"]):
        message.deliveries.append(
            Delivery(destination=destination.name, url=destination.url, next_attempt_at=now)
        )
    db.session.flush()
    message.dispatched_at = now


def deliver_due(
    outbound: Outbound,
    *,
    now: datetime | None = None,
    limit: int = 50,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """Attempt every delivery that is due; returns how many were attempted."""
    now = now or clock()
    query = (
        sa.select(Delivery)
        .where(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at)
    )

    def attempt(delivery: Delivery) -> None:
        message = delivery.message
        sent = outbound.send(delivery.destination, delivery.url, message.event_id, message.payload)
        _record_attempt(delivery, sent.ok, sent.status_code, sent.error, clock)

    def failed(delivery_id: object, exc: Exception) -> None:
        delivery = db.session.get(Delivery, delivery_id)
        if delivery is not None:
            _record_attempt(delivery, False, None, f"{type(exc).__name__}: {exc}", clock)

    # A crash before an attempt's commit loses it while in flight; it is then made again.
    return _each_isolated("delivery", query, limit, attempt, failed)


def _record_attempt(
    delivery: Delivery,
    ok: bool,
    status_code: int | None,
    error: str | None,
    clock: Callable[[], datetime],
) -> None:
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = error[:255] if error else None
    if ok:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = clock()
        return
    delay = schedule.retry_delay(delivery.attempts)
    if delay is None:
        delivery.status = DeliveryStatus.DEAD
        log.error(
            "delivery dead-lettered",
            extra={"delivery_id": delivery.id, "destination": delivery.destination},
        )
    else:
        delivery.next_attempt_at = clock() + delay


def resend(delivery_id: int, *, now: datetime | None = None) -> Delivery | None:
    """Put a dead (or any) delivery back in the queue to be attempted now."""
    delivery = db.session.get(Delivery, delivery_id, with_for_update=True)
    if delivery is None:
        return None
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now or utcnow()
    db.session.commit()
    return delivery


def record_heartbeat(
    worker_id: str, counts: dict[str, int], *, now: datetime | None = None
) -> WorkerHeartbeat:
    """Note that a worker finished a round, and what it did, for the ops page."""
    now = now or utcnow()
    beat = db.session.get(WorkerHeartbeat, worker_id)
    if beat is None:
        beat = WorkerHeartbeat(worker_id=worker_id, started_at=now)
        db.session.add(beat)
    beat.beat_at = now
    beat.last_round = dict(counts)
    db.session.commit()
    return beat
