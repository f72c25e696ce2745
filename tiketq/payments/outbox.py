"""The outbox on its way out: messages become deliveries, which are attempted and retried."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from tiketq.extensions import db
from tiketq.outbound import Outbound
from tiketq.payments import schedule
from tiketq.payments.claims import each_isolated
from tiketq.payments.models import (
    Delivery,
    DeliveryStatus,
    OutboxMessage,
    utcnow,
    work_failed,
)

log = logging.getLogger(__name__)


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
    return each_isolated("delivery", query, limit, attempt, failed)


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
