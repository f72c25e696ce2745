"""Read-only selects for views and the ops page."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import orm

from tiketq.extensions import db
from tiketq.payments.errors import PaymentNotFound
from tiketq.payments.models import (
    Delivery,
    DeliveryStatus,
    Notification,
    OutboxMessage,
    Payment,
    PaymentEvent,
    Refund,
    WorkerHeartbeat,
)
from tiketq.payments.status import (
    OPEN,
    PAID,
    REVIEW_REASONS,
    UNAPPLIED_OUTCOMES,
    PaymentStatus,
    StatusDetail,
)

# The service we replace named payments "payment-<order_id>"; callers may still hold such ids.
LEGACY_ID_PREFIX = "payment-"


def get_payment(reference: str) -> Payment:
    """The payment with this id, or the latest attempt of a legacy "payment-<order_id>" id."""
    try:
        payment = db.session.get(Payment, uuid.UUID(reference))
    except ValueError:
        payment = None
        if reference.startswith(LEGACY_ID_PREFIX):
            payment = latest_for_order(reference[len(LEGACY_ID_PREFIX) :])
    if payment is None:
        raise PaymentNotFound("Payment not found")
    return payment


def latest_for_order(order_id: str) -> Payment | None:
    """The newest attempt for an order, if any."""
    return db.session.scalar(
        sa.select(Payment)
        .where(Payment.order_id == order_id)
        .order_by(Payment.attempt.desc())
        .limit(1)
    )


def payments_for_order(order_id: str) -> list[Payment]:
    """Every attempt for an order, newest first."""
    return list(
        db.session.scalars(
            sa.select(Payment).where(Payment.order_id == order_id).order_by(Payment.attempt.desc())
        )
    )


def counted_attempt(order_id: str, *, lock: bool = False) -> Payment | None:
    """The order's attempt that is open or paid (at most one exists), optionally row-locked."""
    query = sa.select(Payment).where(
        Payment.order_id == order_id, Payment.status.in_(sorted(OPEN | PAID))
    )
    if lock:
        query = query.with_for_update()
    return db.session.scalar(query)


# The ops page: what is stuck, what failed, what needs a person.


@dataclass(frozen=True)
class StatusTotal:
    """How many payments of a period ended up in one status, and their amount."""

    status: PaymentStatus
    count: int
    amount: int


@dataclass(frozen=True)
class MethodTotal:
    """A period's payments by method: attempts, paid attempts and the amount paid."""

    method: str | None
    count: int
    paid: int
    paid_amount: int


@dataclass(frozen=True)
class Flagged:
    """A payment that needs a person, and why."""

    payment: Payment
    reasons: list[str]


@dataclass(frozen=True)
class ReviewList:
    """Payments flagged for review: how many, how many per reason, and the latest of them."""

    total: int
    by_reason: dict[str, int]
    latest: list[Flagged]


@dataclass(frozen=True)
class OutboxBacklog:
    """Outbox work not delivered yet, and since when its oldest part waits."""

    undispatched: int
    pending: int
    failing: int
    dead: int
    # The oldest undispatched message or waiting delivery: with no worker running, messages
    # are never dispatched, and only they show that nothing leaves.
    oldest_waiting_at: datetime | None


def _created_between(since: datetime, until: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(Payment.created_at >= since, Payment.created_at < until)


def totals_by_status(since: datetime, until: datetime) -> list[StatusTotal]:
    """Payments created in [since, until) by current status, with their amounts."""
    rows = db.session.execute(
        sa.select(Payment.status, sa.func.count(), sa.func.coalesce(sa.func.sum(Payment.amount), 0))
        .where(_created_between(since, until))
        .group_by(Payment.status)
    )
    return [StatusTotal(status, count, int(amount)) for status, count, amount in rows]


def totals_by_method(since: datetime, until: datetime) -> list[MethodTotal]:
    """Payments created in [since, until) by the method used (else the one asked for)."""
    method = sa.func.coalesce(Payment.payment_type, Payment.payment_method)
    paid = Payment.status.in_(sorted(PAID))
    rows = db.session.execute(
        sa.select(
            method,
            sa.func.count(),
            sa.func.count().filter(paid),
            sa.func.coalesce(sa.func.sum(Payment.amount).filter(paid), 0),
        )
        .where(_created_between(since, until))
        .group_by(method)
        .order_by(sa.func.count().desc(), method)
    )
    return [MethodTotal(*row[:3], int(row[3])) for row in rows]


def hourly_counts(since: datetime, hours: int = 24) -> dict[tuple[int, PaymentStatus], int]:
    """Payments created in each hour from `since`, by status: {(hour, status): count}."""
    ends = [since + timedelta(hours=hour + 1) for hour in range(hours)]
    hour: sa.Label[int] = sa.case(
        *((Payment.created_at < end, index) for index, end in enumerate(ends)), else_=hours
    ).label("hour")
    rows = db.session.execute(
        sa.select(hour, Payment.status, sa.func.count())
        .where(_created_between(since, ends[-1]))
        .group_by(hour, Payment.status)
    )
    return {(index, status): count for index, status, count in rows}


def stuck_payments(created_before: datetime, *, limit: int = 50) -> tuple[int, list[Payment]]:
    """Open payments created before `created_before`: how many, and the oldest of them."""
    stuck = sa.and_(Payment.status.in_(sorted(OPEN)), Payment.created_at < created_before)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Payment).where(stuck))
    oldest = db.session.scalars(
        sa.select(Payment).where(stuck).order_by(Payment.created_at).limit(limit)
    )
    return count or 0, list(oldest)


# The bare column, as ix_payments_review's condition reads: "IS true" would not match it.
_FLAGGED = Payment.needs_review


def _open_reasons() -> sa.Select[uuid.UUID, str | None]:
    """(payment id, reason) of each flagged payment, from its events since its last resolution."""
    resolution = orm.aliased(PaymentEvent)
    last_resolved = (
        sa.select(sa.func.max(resolution.id))
        .where(
            resolution.payment_id == PaymentEvent.payment_id,
            resolution.status_detail == StatusDetail.REVIEW_RESOLVED,
        )
        .scalar_subquery()
    )
    return (
        sa.select(PaymentEvent.payment_id, PaymentEvent.status_detail)
        .join(Payment, Payment.id == PaymentEvent.payment_id)
        .where(
            _FLAGGED,
            PaymentEvent.status_detail.in_(REVIEW_REASONS),
            # Reasons resolved before are not the open review's, if the payment is flagged again.
            PaymentEvent.id > sa.func.coalesce(last_resolved, 0),
        )
        .distinct()
    )


def open_review_reasons(payment_id: uuid.UUID) -> list[str]:
    """Why a payment's open review was opened; empty when it has none."""
    reasons = _open_reasons().subquery()
    return sorted(
        db.session.scalars(
            sa.select(reasons.c.status_detail).where(reasons.c.payment_id == payment_id)
        )
    )


def payments_to_review(*, limit: int = 50) -> ReviewList:
    """Payments with an open review: how many in all and per reason, and the latest of them."""
    flagged = _FLAGGED
    reasons = _open_reasons().subquery()
    # Annotated, as a subquery's columns are untyped; its reasons are REVIEW_REASONS, never None.
    by_reason: sa.Select[str, int] = sa.select(reasons.c.status_detail, sa.func.count()).group_by(
        reasons.c.status_detail
    )
    counts = {reason: count for reason, count in db.session.execute(by_reason)}
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Payment).where(flagged))
    latest = list(
        db.session.scalars(
            sa.select(Payment).where(flagged).order_by(Payment.updated_at.desc()).limit(limit)
        )
    )
    found: dict[uuid.UUID, list[str]] = {payment.id: [] for payment in latest}
    of_latest: sa.Select[uuid.UUID, str] = sa.select(
        reasons.c.payment_id, reasons.c.status_detail
    ).where(reasons.c.payment_id.in_(list(found)))
    for payment_id, detail in db.session.execute(of_latest):
        found[payment_id].append(detail)
    flagged_list = [Flagged(payment, sorted(found[payment.id])) for payment in latest]
    return ReviewList(total or 0, counts, flagged_list)


def rejected_notifications(
    since: datetime, *, limit: int = 10
) -> tuple[dict[str, int], list[Notification]]:
    """Rejected notifications received since `since` by outcome, and the latest ones of any day."""
    rejected = Notification.outcome.in_([outcome.value for outcome in UNAPPLIED_OUTCOMES])
    counts: dict[str, int] = {
        outcome: count
        for outcome, count in db.session.execute(
            sa.select(Notification.outcome, sa.func.count())
            .where(rejected, Notification.received_at >= since)
            .group_by(Notification.outcome)
        )
    }
    latest = db.session.scalars(
        sa.select(Notification)
        .where(rejected)
        .order_by(Notification.received_at.desc(), Notification.id.desc())
        .limit(limit)
    )
    return counts, list(latest)


def outbox_backlog() -> OutboxBacklog:
    """Messages not yet turned into deliveries, deliveries by state, and the oldest waiting."""
    undispatched = OutboxMessage.dispatched_at.is_(None)
    waiting = Delivery.status == DeliveryStatus.PENDING
    # One round trip of subqueries, each filtered on its own condition, so that the waiting
    # rows are found through the outbox's dispatched_at index and the deliveries' partial
    # index on pending rows, never by reading the delivered bulk.
    # Annotated: SQLAlchemy types a scalar subquery of a count as Any.
    backlog: sa.Select[int, int, int, int, datetime | None, datetime | None] = sa.select(
        sa.select(sa.func.count()).where(undispatched).scalar_subquery(),
        sa.select(sa.func.count()).where(waiting).scalar_subquery(),
        sa.select(sa.func.count()).where(waiting, Delivery.attempts > 0).scalar_subquery(),
        sa.select(sa.func.count()).where(Delivery.status == DeliveryStatus.DEAD).scalar_subquery(),
        sa.select(sa.func.min(OutboxMessage.created_at)).where(undispatched).scalar_subquery(),
        sa.select(sa.func.min(Delivery.created_at)).where(waiting).scalar_subquery(),
    )
    row = db.session.execute(backlog).one()
    undispatched_count, pending, failing, dead, oldest_message, oldest_delivery = row
    oldest = min(filter(None, (oldest_message, oldest_delivery)), default=None)
    return OutboxBacklog(undispatched_count, pending, failing, dead, oldest)


def dead_deliveries(*, limit: int = 50) -> list[Delivery]:
    """Deliveries given up on, newest first, with their messages."""
    return list(
        db.session.scalars(
            sa.select(Delivery)
            .where(Delivery.status == DeliveryStatus.DEAD)
            .options(orm.joinedload(Delivery.message))
            .order_by(Delivery.created_at.desc(), Delivery.id.desc())
            .limit(limit)
        )
    )


def worker_heartbeats(*, limit: int = 10) -> list[WorkerHeartbeat]:
    """The workers heard from most recently."""
    return list(
        db.session.scalars(
            sa.select(WorkerHeartbeat).order_by(WorkerHeartbeat.beat_at.desc()).limit(limit)
        )
    )


def last_reconcile() -> tuple[datetime | None, datetime | None]:
    """When reconciling last changed a payment, and when Midtrans was last asked about one."""
    changed = db.session.scalar(
        sa.select(sa.func.max(PaymentEvent.created_at)).where(PaymentEvent.source == "reconcile")
    )
    checked = db.session.scalar(sa.select(sa.func.max(Payment.last_checked_at)))
    return changed, checked


def search_payments(text: str, *, limit: int = 50) -> list[Payment]:
    """Payments whose id, order_id or gateway_order_id is exactly `text`, newest first."""
    matches: list[sa.ColumnElement[bool]] = [
        Payment.order_id == text,
        Payment.gateway_order_id == text,
    ]
    try:
        matches.append(Payment.id == uuid.UUID(text))
    except ValueError:
        pass
    return list(
        db.session.scalars(
            sa.select(Payment)
            .where(sa.or_(*matches))
            .order_by(Payment.created_at.desc())
            .limit(limit)
        )
    )


def notifications_for(payment: Payment) -> list[Notification]:
    """Every notification about a payment, also those refused before it could be matched."""
    return list(
        db.session.scalars(
            sa.select(Notification)
            .where(
                sa.or_(
                    Notification.payment_id == payment.id,
                    Notification.order_id == payment.gateway_order_id,
                )
            )
            .order_by(Notification.received_at, Notification.id)
        )
    )


def refunds_for(payment_id: uuid.UUID) -> list[Refund]:
    """A payment's refunds, oldest first."""
    return list(
        db.session.scalars(
            sa.select(Refund).where(Refund.payment_id == payment_id).order_by(Refund.id)
        )
    )


def outbox_for(payment_id: uuid.UUID) -> list[OutboxMessage]:
    """A payment's outbox messages with their deliveries, oldest first."""
    return list(
        db.session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.payment_id == payment_id)
            .options(orm.selectinload(OutboxMessage.deliveries))
            .order_by(OutboxMessage.id)
        )
    )
