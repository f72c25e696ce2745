"""Retention: what the service forgets, and when, a small batch per statement.

Payments, their events and refunds are never deleted, nor is anything not yet applied or
delivered. What goes are raw notification bodies long applied (their parsed fields stay),
refused notifications, delivered deliveries, the payloads of messages every destination received,
and the heartbeats of workers long gone. The worker runs one slice of a daily pass per round;
`flask payments purge` runs a pass to the end.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import InstrumentedAttribute

from tiketq.config import RETENTION_DAYS
from tiketq.extensions import db
from tiketq.payments.models import (
    Delivery,
    DeliveryStatus,
    MaintenanceRun,
    Notification,
    OutboxMessage,
    WorkerHeartbeat,
    utcnow,
    work_failed,
)
from tiketq.payments.status import BODY_PURGED_OUTCOMES, REJECTED_OUTCOMES

log = logging.getLogger(__name__)

JOB = "purge"
# Rows per statement: each batch locks little and commits in well under a second.
BATCH = 500
# A pass starts this long after the last one finished.
EVERY = timedelta(days=1)
# Several workers may find a pass due at once: this lock lets one of them start it.
_START_LOCK = zlib.crc32(b"tiketq.retention.start")

# What each kind of purge does, in the order a slice does them.
KINDS = {
    "bodies": "raw bodies of applied notifications dropped (hash kept)",
    "rejected": "refused notifications deleted",
    "deliveries": "delivered deliveries deleted",
    "payloads": "payloads of delivered outbox messages dropped",
    "heartbeats": "heartbeats of silent workers deleted",
}


@dataclass(frozen=True)
class Retention:
    """How long each kind of row is kept."""

    bodies: timedelta = timedelta(days=RETENTION_DAYS["NOTIFICATION_BODY_RETENTION_DAYS"])
    rejected: timedelta = timedelta(days=RETENTION_DAYS["REJECTED_RETENTION_DAYS"])
    outbox: timedelta = timedelta(days=RETENTION_DAYS["OUTBOX_RETENTION_DAYS"])
    heartbeats: timedelta = timedelta(days=RETENTION_DAYS["HEARTBEAT_RETENTION_DAYS"])

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Retention:
        """The retention the configuration asks for."""
        return cls(
            bodies=timedelta(days=config["NOTIFICATION_BODY_RETENTION_DAYS"]),
            rejected=timedelta(days=config["REJECTED_RETENTION_DAYS"]),
            outbox=timedelta(days=config["OUTBOX_RETENTION_DAYS"]),
            heartbeats=timedelta(days=config["HEARTBEAT_RETENTION_DAYS"]),
        )

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        """Per kind, the moment before which its rows go."""
        return {
            "bodies": now - self.bodies,
            "rejected": now - self.rejected,
            "deliveries": now - self.outbox,
            "payloads": now - self.outbox,
            "heartbeats": now - self.heartbeats,
        }


def _one_of(column: InstrumentedAttribute[str], values: list[str]) -> sa.ColumnElement[bool]:
    # Written into the SQL as constants: PostgreSQL proves a partial index's predicate from the
    # query's constants, never from parameters (a prepared statement's generic plan has those).
    return column.in_(sa.bindparam(None, values, expanding=True, literal_execute=True))


_BODY_OUTCOMES = [o.value for o in BODY_PURGED_OUTCOMES]
_REJECTED = [o.value for o in REJECTED_OUTCOMES]
_DELIVERED = [DeliveryStatus.DELIVERED.value]


def candidates(kind: str, cutoff: datetime) -> sa.Select[Any]:
    """The keys of the rows of `kind` from before `cutoff`, oldest first, through its index."""
    if kind == "bodies":
        # ix_notifications_body_kept's own predicate, so that the scan reads only that index.
        return (
            sa.select(Notification.id)
            .where(
                Notification.body_dropped_at.is_(None),
                _one_of(Notification.outcome, _BODY_OUTCOMES),
                Notification.received_at < cutoff,
            )
            .order_by(Notification.received_at)
        )
    if kind == "rejected":
        # Implies ix_notifications_unapplied's predicate (it also holds unknown and failed rows).
        return (
            sa.select(Notification.id)
            .where(_one_of(Notification.outcome, _REJECTED), Notification.received_at < cutoff)
            .order_by(Notification.received_at)
        )
    if kind == "deliveries":
        return (
            sa.select(Delivery.id)
            .where(_one_of(Delivery.status, _DELIVERED), Delivery.delivered_at < cutoff)
            .order_by(Delivery.delivered_at)
        )
    if kind == "payloads":
        # A message that a pending or dead delivery still needs keeps its payload (a person may
        # resend it), and so does one that went out within the retention. Asked per message
        # through uq_deliveries_message: as NOT EXISTS the planner may make it an anti join that
        # reads every delivery to answer for one batch.
        still_needed = (
            sa.select(Delivery.id)
            .where(
                Delivery.message_id == OutboxMessage.id,
                sa.or_(
                    Delivery.status != DeliveryStatus.DELIVERED.value,
                    Delivery.delivered_at.is_(None),
                    Delivery.delivered_at >= cutoff,
                ),
            )
            .limit(1)
            .scalar_subquery()
        )
        return (
            sa.select(OutboxMessage.id)
            .where(
                OutboxMessage.dispatched_at.is_not(None),
                OutboxMessage.payload_dropped_at.is_(None),
                OutboxMessage.dispatched_at < cutoff,
                still_needed.is_(None),
            )
            .order_by(OutboxMessage.dispatched_at)
        )
    if kind == "heartbeats":
        return (
            sa.select(WorkerHeartbeat.worker_id)
            .where(WorkerHeartbeat.beat_at < cutoff)
            .order_by(WorkerHeartbeat.beat_at)
        )
    raise ValueError(f"no purge of {kind!r}")


def _claim(query: sa.Select[Any], limit: int) -> list[Any]:
    # Rows another purge holds are its to do: neither waits for the other. The keys come back
    # here, and the change names them: `id IN (SELECT ...)` may be planned as a hash join over
    # the whole table, `id IN (1, 2, ...)` is read through the primary key.
    return list(db.session.execute(query.limit(limit).with_for_update(skip_locked=True)).all())


def _drop_bodies(cutoff: datetime, limit: int, now: datetime) -> int:
    rows = _claim(
        candidates("bodies", cutoff).add_columns(
            Notification.raw_body, Notification.body_length, Notification.body_sha256
        ),
        limit,
    )
    changes = []
    for row in rows:
        # Accepted bodies are valid UTF-8 (the door's JSON parse refuses others): these are
        # the bytes Midtrans sent.
        body = row.raw_body.encode("utf-8")
        changes.append(
            {
                "id": row.id,
                "raw_body": "",
                "body_length": len(body) if row.body_length is None else row.body_length,
                "body_sha256": row.body_sha256 or hashlib.sha256(body).hexdigest(),
                "body_dropped_at": now,
            }
        )
    if changes:
        db.session.execute(sa.update(Notification), changes)
    return len(changes)


def _delete_rejected(cutoff: datetime, limit: int, now: datetime) -> int:
    return _delete(Notification.id, _keys("rejected", cutoff, limit))


def _delete_deliveries(cutoff: datetime, limit: int, now: datetime) -> int:
    return _delete(Delivery.id, _keys("deliveries", cutoff, limit))


def _drop_payloads(cutoff: datetime, limit: int, now: datetime) -> int:
    keys = _keys("payloads", cutoff, limit)
    if keys:
        # The row stays: its unique (payment_id, event_type) keeps a replayed notification from
        # confirming twice, and the audit looks for a paid payment's payment.succeeded message.
        db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id.in_(keys))
            .values(payload={}, payload_dropped_at=now)
            .execution_options(synchronize_session=False)
        )
    return len(keys)


def _delete_heartbeats(cutoff: datetime, limit: int, now: datetime) -> int:
    return _delete(WorkerHeartbeat.worker_id, _keys("heartbeats", cutoff, limit))


def _keys(kind: str, cutoff: datetime, limit: int) -> list[Any]:
    return [key for (key,) in _claim(candidates(kind, cutoff), limit)]


def _delete(key: InstrumentedAttribute[Any], keys: list[Any]) -> int:
    if keys:
        db.session.execute(
            sa.delete(key.class_).where(key.in_(keys)).execution_options(synchronize_session=False)
        )
    return len(keys)


_PURGES: dict[str, Callable[[datetime, int, datetime], int]] = {
    "bodies": _drop_bodies,
    "rejected": _delete_rejected,
    "deliveries": _delete_deliveries,
    "payloads": _drop_payloads,
    "heartbeats": _delete_heartbeats,
}


def purge_batch(kind: str, cutoff: datetime, *, limit: int = BATCH, now: datetime) -> int:
    """Purge at most `limit` rows of `kind` from before `cutoff`, uncommitted; how many went."""
    return _PURGES[kind](cutoff, limit, now)


def would_purge(retention: Retention, *, now: datetime | None = None) -> dict[str, int]:
    """Count, per kind, what a pass starting now would purge; changes nothing."""
    cutoffs = retention.cutoffs(now or utcnow())
    return {
        kind: db.session.scalar(
            sa.select(sa.func.count()).select_from(candidates(kind, cutoff).subquery())
        )
        or 0
        for kind, cutoff in cutoffs.items()
    }


def purge_slice(
    run: MaintenanceRun, retention: Retention, *, limit: int = BATCH, now: datetime | None = None
) -> dict[str, int]:
    """One batch of each kind for a locked run, its counts added, committed; finished if empty."""
    now = now or utcnow()
    # From the run's start: rows keep coming of age while a pass is under way, and a pass that
    # chased them would never end.
    cutoffs = retention.cutoffs(run.started_at)
    counts = {kind: purge_batch(kind, cutoffs[kind], limit=limit, now=now) for kind in KINDS}
    run.summary = {kind: run.summary.get(kind, 0) + counts[kind] for kind in KINDS}
    if not any(counts.values()):
        run.finished_at = now
    db.session.commit()
    return counts


def purge(retention: Retention, *, limit: int = BATCH) -> MaintenanceRun:
    """Run a whole pass to its end, recorded in maintenance_runs; the finished run."""
    run = MaintenanceRun(job=JOB, started_at=utcnow(), summary=dict.fromkeys(KINDS, 0))
    db.session.add(run)
    db.session.commit()
    run_id = run.id
    while True:
        # A worker may take a slice of this run between two of ours (it adds its own counts).
        run = db.session.execute(
            _locked(sa.select(MaintenanceRun).where(MaintenanceRun.id == run_id))
        ).scalar_one()
        if run.finished_at is not None:
            db.session.rollback()
            return run
        purge_slice(run, retention, limit=limit)


def purge_when_due(retention: Retention, *, limit: int = BATCH, now: datetime | None = None) -> int:
    """One slice of the daily pass if due or under way and no other worker has it; rows purged."""
    now = now or utcnow()
    _start_if_due(now)
    run = db.session.scalar(_locked(_OPEN_RUN, skip_locked=True))
    if run is None:
        db.session.rollback()
        return 0
    try:
        counts = purge_slice(run, retention, limit=limit, now=now)
    except OperationalError:
        raise
    except Exception as exc:
        # Nothing stops the line: the other jobs of the round go on, the next round tries again.
        db.session.rollback()
        log.error("purge failed: %s", exc, exc_info=exc)
        work_failed.send("purge", error=exc)
        return 0
    return sum(counts.values())


_OPEN_RUN = (
    sa.select(MaintenanceRun)
    .where(MaintenanceRun.job == JOB, MaintenanceRun.finished_at.is_(None))
    .order_by(MaintenanceRun.started_at)
    .limit(1)
)
# A few rows a day: no index needed.
_LAST_FINISHED = sa.select(sa.func.max(MaintenanceRun.finished_at)).where(MaintenanceRun.job == JOB)


def _locked(
    query: sa.Select[MaintenanceRun], *, skip_locked: bool = False
) -> sa.Select[MaintenanceRun]:
    # Read again under the lock: the summary another slice added to must not be a stale copy.
    return query.with_for_update(skip_locked=skip_locked).execution_options(populate_existing=True)


def _due(now: datetime) -> bool:
    if db.session.scalar(_OPEN_RUN) is not None:
        return False
    last = db.session.scalar(_LAST_FINISHED)
    return last is None or last <= now - EVERY


def _start_if_due(now: datetime) -> None:
    if not _due(now):
        return
    if db.engine.dialect.name == "postgresql":
        if not db.session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(_START_LOCK))):
            db.session.rollback()
            return
        # Another worker may have started, or even finished, a pass since the first look.
        if not _due(now):
            db.session.rollback()
            return
    db.session.add(MaintenanceRun(job=JOB, started_at=now, summary=dict.fromkeys(KINDS, 0)))
    db.session.commit()
