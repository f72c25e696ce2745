"""Use cases the worker runs: reconcile, expire, re-apply the inbox, deliver the outbox.

Every batch claims its rows with FOR UPDATE SKIP LOCKED, so workers on several machines share the
work through PostgreSQL and never do the same row twice; each row is committed on its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from tiketq.extensions import db
from tiketq.gateway import Gateway, GatewayError, InvalidNotification, InvalidSignature
from tiketq.outbound import Outbound
from tiketq.payments.models import (
    Delivery,
    DeliveryStatus,
    Notification,
    NotificationOutcome,
    OutboxMessage,
    Payment,
    WorkerHeartbeat,
    utcnow,
)
from tiketq.payments.notifications import (
    StoredNotification,
    announce,
    apply_gateway_state,
    apply_notification,
    fetch_gateway_state,
)
from tiketq.payments.schedule import retry_delay
from tiketq.payments.status import OPEN, PaymentStatus

log = logging.getLogger(__name__)

# Inbox rows still "received" after this long were interrupted mid-apply (a crash, a lost database).
STUCK_AFTER = timedelta(minutes=2)
# Notifications for unknown orders are looked at again for this long.
UNKNOWN_ORDER_WINDOW = timedelta(days=2)


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


def refresh(payment: Payment, gateway: Gateway, *, source: str, now: datetime) -> bool:
    """Ask Midtrans about a row-locked open payment and apply the answer; True if it answered."""
    payment.checks += 1
    payment.last_checked_at = now
    try:
        state = fetch_gateway_state(payment, gateway)
    except GatewayError as exc:
        log.warning("reconcile deferred: %s", exc, extra={"payment_id": str(payment.id)})
        payment.schedule_check(now)
        return False
    if state is not None:
        apply_gateway_state(payment, state, source=source)
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
    checked = 0
    for payment in _claim_each(query, limit):
        refresh(payment, gateway, source="reconcile", now=now)
        db.session.commit()
        checked += 1
    return checked


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


def expire_overdue(gateway: Gateway, *, now: datetime | None = None, limit: int = 50) -> int:
    """Expire open payments past their time here and at Midtrans; returns how many expired."""
    now = now or utcnow()
    query = (
        sa.select(Payment)
        .where(Payment.expires_at <= now, Payment.status.in_(sorted(OPEN)))
        .order_by(Payment.expires_at)
    )
    expired = 0
    for payment in _claim_each(query, limit):
        expired += _expire(payment, gateway, now)
        db.session.commit()
    return expired


def _expire(payment: Payment, gateway: Gateway, now: datetime) -> bool:
    # A last-minute payment must win over expiry, so ask Midtrans first.
    try:
        state = fetch_gateway_state(payment, gateway)
    except GatewayError as exc:
        log.warning("expiry deferred: %s", exc, extra={"payment_id": str(payment.id)})
        return False
    if state is not None:
        apply_gateway_state(payment, state, source="reconcile")
        if payment.status not in OPEN:
            return payment.status is PaymentStatus.EXPIRED
    try:
        if state is not None:
            gateway.expire(payment.gateway_order_id)
        elif payment.snap_token:
            gateway.cancel_checkout(payment.snap_token)
    except GatewayError as exc:
        # Midtrans expires the transaction itself at the expiry we sent; a late payment is flagged.
        log.warning("midtrans expiry failed: %s", exc, extra={"payment_id": str(payment.id)})
    payment.transition_to(PaymentStatus.EXPIRED, source="expiry", detail="expired_by_worker")
    announce(payment)
    log.info("payment expired", extra={"payment_id": str(payment.id), "order_id": payment.order_id})
    return True


def reapply_inbox(gateway: Gateway, *, now: datetime | None = None, limit: int = 50) -> int:
    """Apply stored notifications whose order now exists, or whose apply was interrupted."""
    now = now or utcnow()
    known_order = sa.exists().where(Payment.gateway_order_id == Notification.order_id)
    query = (
        sa.select(Notification)
        .where(
            Notification.signature_ok.is_(True),
            sa.or_(
                sa.and_(
                    Notification.outcome == NotificationOutcome.UNKNOWN_ORDER,
                    Notification.received_at >= now - UNKNOWN_ORDER_WINDOW,
                    known_order,
                ),
                sa.and_(
                    Notification.outcome == NotificationOutcome.RECEIVED,
                    Notification.received_at <= now - STUCK_AFTER,
                ),
            ),
        )
        .order_by(Notification.id)
    )
    handled = 0
    for inbox in _claim_each(query, limit):
        handled += 1
        try:
            notification = gateway.parse_notification(json.loads(inbox.raw_body))
        except (InvalidSignature, InvalidNotification) as exc:
            inbox.outcome, inbox.detail = NotificationOutcome.MALFORMED, str(exc)[:255]
            db.session.commit()
            continue
        apply_notification(
            StoredNotification(inbox.id, inbox.dedupe_key), notification, gateway=gateway
        )
    return handled


def dispatch_outbox(outbound: Outbound, *, now: datetime | None = None, limit: int = 100) -> int:
    """Turn new outbox messages into one delivery per destination."""
    now = now or utcnow()
    query = (
        sa.select(OutboxMessage)
        .where(OutboxMessage.dispatched_at.is_(None))
        .order_by(OutboxMessage.id)
    )
    messages = list(db.session.scalars(query.limit(limit).with_for_update(skip_locked=True)))
    for message in messages:
        for destination in outbound.destinations(message.event_type, message.payload["order_id"]):
            message.deliveries.append(
                Delivery(destination=destination.name, url=destination.url, next_attempt_at=now)
            )
        message.dispatched_at = now
    db.session.commit()
    return len(messages)


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
    attempted = 0
    for delivery in _claim_each(query, limit):
        attempted += 1
        message = delivery.message
        sent = outbound.send(delivery.destination, delivery.url, message.event_id, message.payload)
        delivery.attempts += 1
        delivery.last_status_code = sent.status_code
        delivery.last_error = sent.error
        if sent.ok:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = clock()
        else:
            delay = retry_delay(delivery.attempts)
            if delay is None:
                delivery.status = DeliveryStatus.DEAD
                log.error(
                    "delivery dead-lettered",
                    extra={"delivery_id": delivery.id, "destination": delivery.destination},
                )
            else:
                delivery.next_attempt_at = clock() + delay
        # A crash before this commit loses the attempt in flight, which is then made again.
        db.session.commit()
    return attempted


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
