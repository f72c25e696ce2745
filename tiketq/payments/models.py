"""Typed SQLAlchemy models of the payments domain."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from blinker import Namespace
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tiketq.extensions import Model, db
from tiketq.payments.errors import InvalidTransition
from tiketq.payments.schedule import next_check
from tiketq.payments.status import (
    BODY_PURGED_OUTCOMES,
    OPEN,
    PAID,
    UNAPPLIED_OUTCOMES,
    NotificationOutcome,
    PaymentStatus,
    can_transition,
)

# Sent on every change of a payment's status, for those who count them (metrics) without the
# domain knowing who listens: (payment, from_status=, to_status=, source=).
status_changed = Namespace().signal("status-changed")
# Sent when a worker job could not process a row and left it for a retry: (job, error=).
work_failed = Namespace().signal("work-failed")


def utcnow() -> datetime:
    """Now, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, also on SQLite (which drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDocument = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_status_type = sa.Enum(
    PaymentStatus,
    name="payment_status",
    native_enum=False,  # the transaction service owns a native enum named "paymentstatus"
    create_constraint=True,
    length=20,
    values_callable=lambda statuses: [s.value for s in statuses],
    validate_strings=True,
)

_COUNTED = ", ".join(f"'{s.value}'" for s in sorted(OPEN | PAID))
_OPEN = "status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(OPEN)))


def _partial(name: str, *columns: str, where: str) -> sa.Index:
    """An index on the rows `where` holds for, alike on PostgreSQL and SQLite."""
    return sa.Index(name, *columns, postgresql_where=sa.text(where), sqlite_where=sa.text(where))


class Payment(Model):
    """One attempt to collect an order's amount through Midtrans."""

    __tablename__ = "payments"
    __table_args__ = (
        # One attempt per order may be open or paid; ended attempts make room for a new one.
        sa.Index(
            "uq_payments_order_id_counted",
            "order_id",
            unique=True,
            postgresql_where=sa.text(f"status IN ({_COUNTED})"),
            sqlite_where=sa.text(f"status IN ({_COUNTED})"),
        ),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount", name="refund_bounds"
        ),
        _partial("ix_payments_check_due", "next_check_at", where="next_check_at IS NOT NULL"),
        # The open and the flagged are few whatever the history: the stuck list, the expiry
        # claim and the review list read only them.
        _partial("ix_payments_open_created", "created_at", where=_OPEN),
        _partial("ix_payments_open_expiry", "expires_at", where=_OPEN),
        _partial("ix_payments_review", "updated_at", where="needs_review"),
        _partial(
            "ix_payments_last_checked", "last_checked_at", where="last_checked_at IS NOT NULL"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    order_id: Mapped[str] = mapped_column(sa.String(50), index=True)
    attempt: Mapped[int] = mapped_column(default=1)
    gateway_order_id: Mapped[str] = mapped_column(sa.String(50), unique=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3), default="IDR")
    status: Mapped[PaymentStatus] = mapped_column(_status_type, default=PaymentStatus.PENDING)
    status_detail: Mapped[str | None] = mapped_column(sa.String(40))
    payment_method: Mapped[str | None] = mapped_column(sa.String(20))
    payment_type: Mapped[str | None] = mapped_column(sa.String(30))
    gateway_transaction_id: Mapped[str | None] = mapped_column(sa.String(64))
    snap_token: Mapped[str | None] = mapped_column(sa.String(64))
    snap_redirect_url: Mapped[str | None] = mapped_column(sa.Text)
    description: Mapped[str | None] = mapped_column(sa.String(255))
    # The caller's page to send the traveller back to, on a FINISH_URL_HOSTS host; None: FINISH_URL.
    finish_url: Mapped[str | None] = mapped_column(sa.String(2048))
    customer: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refunded_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # What the traveller must do or did (VA number, bill key, masked card...), for the receipt.
    payment_details: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    needs_review: Mapped[bool] = mapped_column(default=False)
    # When the worker next asks Midtrans about this payment, and how often it already has.
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checks: Mapped[int] = mapped_column(default=0)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    request_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    # Indexed for the dashboard's day and the incremental audit: both read a recent range.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, index=True
    )

    events: Mapped[list[PaymentEvent]] = relationship(
        back_populates="payment", order_by="PaymentEvent.id", cascade="all, delete-orphan"
    )

    def is_expired(self, now: datetime) -> bool:
        """Tell whether the payment's time to pay has run out."""
        return now >= self.expires_at

    def schedule_check(self, now: datetime) -> None:
        """Plan when to ask Midtrans about this payment next, or never once it left open."""
        self.next_check_at = (
            next_check(self.created_at, self.expires_at, self.checks, now)
            if self.status in OPEN
            else None
        )

    def transition_to(
        self,
        new: PaymentStatus,
        *,
        source: str,
        detail: str | None = None,
        data: dict[str, Any] | None = None,
        notification_id: int | None = None,
    ) -> None:
        """Move to `new`, recording the change as an event; refuse moves the table forbids."""
        if not can_transition(self.status, new):
            raise InvalidTransition(self.status, new)
        self._record(new, source=source, detail=detail, data=data, notification_id=notification_id)

    def annotate(
        self,
        detail: str | None,
        *,
        source: str,
        review: bool = False,
        data: dict[str, Any] | None = None,
        notification_id: int | None = None,
    ) -> None:
        """Record a finer truth about the payment without changing its status, as an event."""
        self.needs_review = self.needs_review or review
        self._record(
            self.status, source=source, detail=detail, data=data, notification_id=notification_id
        )

    def remark(self, detail: str, *, source: str, data: dict[str, Any]) -> None:
        """Record something done to the payment that changes neither its status nor its detail."""
        append_row(
            PaymentEvent.__table__,
            {
                "payment_id": self.id,
                "from_status": self.status,
                "to_status": self.status,
                "status_detail": detail,
                "source": source,
                "data": data,
                "notification_id": None,
            },
        )

    def _record(
        self,
        new: PaymentStatus,
        *,
        source: str,
        detail: str | None,
        data: dict[str, Any] | None,
        notification_id: int | None,
    ) -> None:
        # Inserted, not appended to self.events: appending would load the whole history first,
        # and the unit of work would track a row that nothing reads back in this transaction.
        # The payment's row exists already: a new one gets its first event through self.events.
        append_row(
            PaymentEvent.__table__,
            {
                "payment_id": self.id,
                "from_status": self.status,
                "to_status": new,
                "status_detail": detail,
                "source": source,
                "data": data or {},
                "notification_id": notification_id,
            },
        )
        if new != self.status:
            status_changed.send(self, from_status=self.status, to_status=new, source=source)
        self.status = new
        self.status_detail = detail
        if new not in OPEN:
            self.next_check_at = None


# A payment turning success, not a note on one already paid.
_NEW_SUCCESS = "to_status = 'success' AND (from_status IS NULL OR from_status <> 'success')"


class PaymentEvent(Model):
    """An append-only record of one status change of a payment."""

    __tablename__ = "payment_events"
    __table_args__ = (
        # The latest reconcile change and the latest success, found at the end of small indexes.
        _partial("ix_payment_events_reconcile", "created_at", where="source = 'reconcile'"),
        _partial("ix_payment_events_success", "id", where=_NEW_SUCCESS),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("payments.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(sa.String(20))
    to_status: Mapped[str] = mapped_column(sa.String(20))
    status_detail: Mapped[str | None] = mapped_column(sa.String(40))
    source: Mapped[str] = mapped_column(sa.String(20))
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    notification_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("notifications.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    payment: Mapped[Payment] = relationship(back_populates="events")


# Rows the worker still has to apply (or retry); rows that changed nothing (refused at the door,
# for no known order yet, or failing), which the ops page lists and the purge deletes; applied
# rows whose raw body the purge has still to drop.
_WAITING = "outcome IN ('received', 'failed') AND next_attempt_at IS NOT NULL"
_UNAPPLIED = "outcome IN ({})".format(", ".join(f"'{o.value}'" for o in UNAPPLIED_OUTCOMES))
_BODY_KEPT = "body_dropped_at IS NULL AND outcome IN ({})".format(
    ", ".join(f"'{o.value}'" for o in BODY_PURGED_OUTCOMES)
)


class Notification(Model):
    """The inbox: every Midtrans notification as received, stored before it is applied."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Emptied by the purge after NOTIFICATION_BODY_RETENTION_DAYS; body_sha256 says what it was.
    raw_body: Mapped[str] = mapped_column(sa.Text)
    order_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    transaction_status: Mapped[str | None] = mapped_column(sa.String(32))
    status_code: Mapped[str | None] = mapped_column(sa.String(8))
    gross_amount: Mapped[str | None] = mapped_column(sa.String(32))
    signature_ok: Mapped[bool] = mapped_column(default=False)
    # Identical deliveries share this key, so a redelivery is recognised without re-applying it.
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("payments.id", ondelete="SET NULL"), index=True
    )
    outcome: Mapped[str] = mapped_column(sa.String(20), default=NotificationOutcome.RECEIVED)
    detail: Mapped[str | None] = mapped_column(sa.String(255))
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The worker's tries at this row: how many, when the next may start, what went wrong last.
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.String(255))
    # A refused body is stored truncated; these say what it was.
    body_length: Mapped[int | None]
    body_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    body_dropped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        _partial("ix_notifications_waiting", "next_attempt_at", where=_WAITING),
        _partial("ix_notifications_unapplied", "received_at", where=_UNAPPLIED),
        _partial("ix_notifications_body_kept", "received_at", where=_BODY_KEPT),
    )


class OutboxMessage(Model):
    """A message to another service, written in the same transaction as the change behind it."""

    __tablename__ = "outbox"
    __table_args__ = (
        # One message per payment and event: a replayed notification cannot confirm twice.
        sa.UniqueConstraint("payment_id", "event_type", name="uq_outbox_payment_event"),
        _partial("ix_outbox_undispatched", "id", where="dispatched_at IS NULL"),
        _partial(
            "ix_outbox_payload_kept",
            "dispatched_at",
            where="dispatched_at IS NOT NULL AND payload_dropped_at IS NULL",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, unique=True, default=uuid.uuid4)
    payment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("payments.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(sa.String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set once the worker has made a delivery for each destination of the message.
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The payload is emptied once every delivery went out OUTBOX_RETENTION_DAYS ago; the row
    # stays, so that the payment's confirmation is still known to have been sent.
    payload_dropped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    deliveries: Mapped[list[Delivery]] = relationship(back_populates="message")


class DeliveryStatus(StrEnum):
    """Where one delivery of an outbox message stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # gave up after the last attempt; a person may resend it


class Delivery(Model):
    """One outbox message on its way to one destination, with its retry schedule."""

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("message_id", "destination", name="uq_deliveries_message"),
        # Pending ones are due work; dead ones wait for a person; delivered ones for the purge.
        _partial("ix_deliveries_due", "next_attempt_at", where="status = 'pending'"),
        _partial("ix_deliveries_dead", "created_at", where="status = 'dead'"),
        _partial("ix_deliveries_delivered", "delivered_at", where="status = 'delivered'"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("outbox.id", ondelete="CASCADE"))
    destination: Mapped[str] = mapped_column(sa.String(40))
    url: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(sa.String(255))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    message: Mapped[OutboxMessage] = relationship(back_populates="deliveries")


class Refund(Model):
    """One refund of a payment, keyed so that a retried request refunds once."""

    __tablename__ = "refunds"
    __table_args__ = (sa.CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("payments.id", ondelete="CASCADE"), index=True
    )
    refund_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    reason: Mapped[str] = mapped_column(sa.String(255))
    # requested: stored, Midtrans not answered yet; succeeded; failed (Midtrans refused).
    status: Mapped[str] = mapped_column(sa.String(20), default="requested")
    gateway_response: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What changed since the last audit.
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, index=True
    )


class WorkerHeartbeat(Model):
    """The last sign of life of one worker process, and what its last round did."""

    __tablename__ = "worker_heartbeats"

    # hostname:pid, so that a restarted worker shows up as a new one and the old one goes quiet.
    worker_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_round: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)


class MaintenanceRun(Model):
    """One pass of a maintenance job (audit, purge): when it ran, and what it found or did."""

    __tablename__ = "maintenance_runs"
    __table_args__ = (sa.Index("ix_maintenance_runs_job", "job", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # "audit" (what changed since the last clean one), "audit-full", "purge".
    job: Mapped[str] = mapped_column(sa.String(20))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # None while the pass is under way (a purge spread over worker rounds), or if it was cut off.
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the pass looked at and found: rows checked, violations, rows purged by kind...
    summary: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)


def append_row(table: sa.Table, row: dict[str, Any]) -> None:
    """Insert an append-only row (an event, an outbox message) into the current transaction.

    No autoflush: the payment's pending changes go out once, in one UPDATE, at commit.
    """
    with db.session.no_autoflush:
        db.session.execute(_insert_into(table), row)


@functools.cache
def _insert_into(table: sa.Table) -> sa.Insert:
    # Built once per table: building a statement costs more than running a cached one.
    return sa.insert(table)
