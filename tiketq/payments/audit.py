"""Invariants every payment must keep, checked set-based over batches of payments."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects.postgresql import ARRAY

from tiketq.extensions import db
from tiketq.outbound import TRANSACTION_SERVICE
from tiketq.payments.models import (
    Delivery,
    MaintenanceRun,
    OutboxMessage,
    Payment,
    PaymentEvent,
    Refund,
    utcnow,
)
from tiketq.payments.status import PAID

INCREMENTAL, FULL = "audit", "audit-full"
BATCH = 5_000
# A transaction in flight when a run starts commits after the run has looked, with updated_at
# stamps and event ids from before the run's start: the next run must still see its rows. The
# margin also absorbs small clock differences between the hosts that stamp updated_at. It
# assumes no transaction of the service stays open longer than this.
MARGIN = timedelta(minutes=5)

_PAID = sorted(status.value for status in PAID)
_SUCCEEDED = "payment.succeeded"
# Violations come out per payment in this order of rules, as a payment-by-payment walk finds them.
_RULES = ("history", "refunds", "paid_at", "confirmation")


@dataclass(frozen=True)
class Violation:
    """One broken invariant on one payment."""

    payment_id: uuid.UUID
    order_id: str
    rule: str
    detail: str


# The condition that a payment-id column is one of the batch's.
_Among = Callable[[orm.InstrumentedAttribute[uuid.UUID]], sa.ColumnElement[bool]]
# A violation with where it sorts: its payment, its rule, then its place among the rule's findings.
_Found = tuple[tuple[uuid.UUID, int, int], Violation]


def _found(payment_id: uuid.UUID, order_id: str, rule: str, detail: str, place: int = 0) -> _Found:
    return (payment_id, _RULES.index(rule), place), Violation(payment_id, order_id, rule, detail)


def check(ids: Sequence[uuid.UUID], *, contiguous: bool = False) -> list[Violation]:
    """Every violation among the payments `ids`, each rule checked by one query over them all."""
    # A list of scattered ids is looked up one by one. Every id from the first to the last (a
    # keyset batch) is one range of each index instead: many times faster, and the planner
    # takes it for the small slice it is, where a long IN list may look like a table's worth.
    if contiguous:
        lowest, highest = ids[0], ids[-1]

        def among(column: orm.InstrumentedAttribute[uuid.UUID]) -> sa.ColumnElement[bool]:
            return column.between(lowest, highest)

    elif db.session.get_bind().dialect.name == "postgresql":
        # One array instead of 5,000 parameters: on a million payments a scattered batch's
        # checks took about 45 % less time, and they are most of what an incremental run costs.
        scattered = sa.cast(sa.literal([str(i) for i in ids], ARRAY(sa.Text)), ARRAY(sa.Uuid))

        def among(column: orm.InstrumentedAttribute[uuid.UUID]) -> sa.ColumnElement[bool]:
            return column == sa.any_(scattered)

    else:

        def among(column: orm.InstrumentedAttribute[uuid.UUID]) -> sa.ColumnElement[bool]:
            return column.in_(ids)

    found = [*_history(among), *_refunds(among), *_paid_at(among), *_confirmation(among)]
    return [violation for _, violation in sorted(found, key=lambda item: item[0])]


def _history(among: _Among) -> Iterator[_Found]:
    window: dict[str, Any] = {"partition_by": PaymentEvent.payment_id, "order_by": PaymentEvent.id}
    chain = (
        sa.select(
            PaymentEvent.payment_id,
            PaymentEvent.id,
            PaymentEvent.from_status,
            PaymentEvent.to_status,
            sa.func.lag(PaymentEvent.to_status).over(**window).label("before"),
            sa.func.lead(PaymentEvent.id).over(**window).label("next_id"),
        )
        .where(among(PaymentEvent.payment_id))
        .subquery()
    )
    last_differs = sa.and_(chain.c.next_id.is_(None), chain.c.to_status != Payment.status)
    # to_status is never NULL, so `before` is NULL on a payment's first event only.
    broken = sa.and_(
        chain.c.before.is_not(None), chain.c.from_status.is_distinct_from(chain.c.before)
    )
    rows = db.session.execute(
        sa.select(
            Payment.id,
            Payment.order_id,
            Payment.status,
            chain.c.id.label("event_id"),
            chain.c.from_status,
            chain.c.to_status,
            chain.c.before,
            last_differs.label("last_differs"),
            broken.label("broken"),
        )
        .outerjoin(chain, chain.c.payment_id == Payment.id)
        .where(among(Payment.id), sa.or_(chain.c.id.is_(None), last_differs, broken))
    )
    for row in rows:
        if row.event_id is None:
            yield _found(row.id, row.order_id, "history", "no events at all")
            continue
        if row.last_differs:
            detail = f"status {row.status} but last event says {row.to_status}"
            yield _found(row.id, row.order_id, "history", detail)
        if row.broken:
            detail = f"event {row.event_id} starts at {row.from_status}, not {row.before}"
            yield _found(row.id, row.order_id, "history", detail, row.event_id)


def _refunds(among: _Among) -> Iterator[_Found]:
    succeeded = (
        sa.select(Refund.payment_id, sa.func.sum(Refund.amount).label("total"))
        .where(among(Refund.payment_id), Refund.status == "succeeded")
        .group_by(Refund.payment_id)
        .subquery()
    )
    total = sa.func.coalesce(succeeded.c.total, 0)
    refunded = sa.case((total > Payment.refunded_amount, total), else_=Payment.refunded_amount)
    rows = db.session.execute(
        sa.select(Payment.id, Payment.order_id, Payment.amount, refunded.label("refunded"))
        .outerjoin(succeeded, succeeded.c.payment_id == Payment.id)
        .where(among(Payment.id), refunded > Payment.amount)
    )
    for row in rows:
        yield _found(row.id, row.order_id, "refunds", f"{row.refunded} refunded of {row.amount}")


def _paid_at(among: _Among) -> Iterator[_Found]:
    rows = db.session.execute(
        sa.select(Payment.id, Payment.order_id, Payment.status).where(
            among(Payment.id), Payment.status.in_(_PAID), Payment.paid_at.is_(None)
        )
    )
    for row in rows:
        yield _found(row.id, row.order_id, "paid_at", f"{row.status} without paid_at")


def _confirmation(among: _Among) -> Iterator[_Found]:
    # Outer joins, not NOT EXISTS: under an OR, PostgreSQL answers an EXISTS by hashing the
    # whole outbox. The unique keys make each join match one row at most.
    rows = db.session.execute(
        sa.select(Payment.id, Payment.order_id, OutboxMessage.id.label("message_id"))
        .outerjoin(
            OutboxMessage,
            sa.and_(OutboxMessage.payment_id == Payment.id, OutboxMessage.event_type == _SUCCEEDED),
        )
        .outerjoin(
            Delivery,
            sa.and_(
                Delivery.message_id == OutboxMessage.id,
                Delivery.destination == TRANSACTION_SERVICE,
                Delivery.status == "dead",
            ),
        )
        .where(
            among(Payment.id),
            Payment.status.in_(_PAID),
            sa.or_(OutboxMessage.id.is_(None), Delivery.id.is_not(None)),
        )
    )
    for row in rows:
        detail = (
            "paid but no payment.succeeded message queued"
            if row.message_id is None
            else "the transaction service's confirmation is dead-lettered"
        )
        yield _found(row.id, row.order_id, "confirmation", detail)


def changed(since: datetime, after_event: int) -> sa.CompoundSelect[uuid.UUID]:
    """Payments that may have changed since `since`, or gained an event after `after_event`."""
    return sa.union(
        sa.select(Payment.id).where(Payment.updated_at >= since),
        sa.select(PaymentEvent.payment_id).where(PaymentEvent.id > after_event),
        sa.select(Refund.payment_id).where(Refund.updated_at >= since),
        # A delivery that dies touches no payment: the few dead ones are looked at every time.
        sa.select(OutboxMessage.payment_id)
        .join(Delivery, Delivery.message_id == OutboxMessage.id)
        .join(Payment, Payment.id == OutboxMessage.payment_id)
        .where(
            Delivery.status == "dead",
            Delivery.destination == TRANSACTION_SERVICE,
            OutboxMessage.event_type == _SUCCEEDED,
            Payment.status.in_(_PAID),
        ),
    )


def settled_event_id(before: datetime) -> int:
    """The last event written before `before` (0 for none): what a run may take as seen."""
    query = (
        sa.select(PaymentEvent.id)
        .where(PaymentEvent.created_at < before)
        .order_by(PaymentEvent.id.desc())
        .limit(1)
    )
    return db.session.scalar(query) or 0


def estimate() -> int:
    """About how many payments there are: PostgreSQL's statistics, else a count."""
    if db.session.get_bind().dialect.name == "postgresql":
        rows = db.session.scalar(
            sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('payments')")
        )
        # -1 (or 0 on a table that grew since) until the table is first analyzed.
        if rows is not None and rows > 0:
            return int(rows)
    return db.session.scalar(sa.select(sa.func.count()).select_from(Payment)) or 0


def last_clean() -> MaintenanceRun | None:
    """The latest audit, incremental or full, that finished without finding any violation."""
    return db.session.scalar(
        sa.select(MaintenanceRun)
        .where(
            MaintenanceRun.job.in_((INCREMENTAL, FULL)),
            MaintenanceRun.finished_at.is_not(None),
            MaintenanceRun.summary["violations"].as_integer() == 0,
        )
        .order_by(MaintenanceRun.started_at.desc())
        .limit(1)
    )


@dataclass
class Run:
    """One audit pass, recorded in maintenance_runs from its start to its summary."""

    record: MaintenanceRun
    # None: every payment is checked (--full, or no clean run to start from).
    since: datetime | None
    after_event: int
    started: float
    checked: int = 0
    violations: int = 0

    def batches(self, batch: int = BATCH) -> Iterator[tuple[int, list[Violation]]]:
        """Check the run's payments a batch at a time: how many each batch held, what it broke."""
        everything = self.since is None
        for ids in self._ids(batch):
            found = check(ids, contiguous=everything)
            self.checked += len(ids)
            self.violations += len(found)
            yield len(ids), found

    def _ids(self, batch: int) -> Iterator[list[uuid.UUID]]:
        if self.since is None:
            yield from _every_payment(batch)
            return
        # Streamed, not listed: after a long pause the changed payments may be millions.
        result = db.session.execute(
            changed(self.since, self.after_event), execution_options={"yield_per": batch}
        )
        for ids in result.scalars().partitions():
            yield list(ids)

    def finish(self) -> float:
        """Record what the run checked and found; the seconds it took."""
        seconds = time.monotonic() - self.started
        self.record.finished_at = utcnow()
        self.record.summary = {
            **self.record.summary,
            "checked": self.checked,
            "violations": self.violations,
            "seconds": round(seconds, 3),
        }
        db.session.commit()
        return seconds


def start(*, full: bool) -> Run:
    """Begin a recorded audit of every payment, or of what changed since the last clean one."""
    previous = None if full else last_clean()
    since = None if previous is None else previous.started_at - MARGIN
    after_event = 0 if previous is None else int(previous.summary["last_event_id"])
    started_at = utcnow()
    record = MaintenanceRun(
        job=FULL if full else INCREMENTAL,
        started_at=started_at,
        summary={
            "since": None if since is None else since.isoformat(),
            # Events of transactions in flight now may hold lower ids than some already
            # committed: only those older than the margin count as seen.
            "last_event_id": settled_event_id(started_at - MARGIN),
        },
    )
    db.session.add(record)
    # Committed at once, so that a run that dies half-way stays on record as unfinished.
    db.session.commit()
    return Run(record, since, after_event, time.monotonic())


def _every_payment(batch: int) -> Iterator[list[uuid.UUID]]:
    last: uuid.UUID | None = None
    while True:
        query = sa.select(Payment.id).order_by(Payment.id).limit(batch)
        if last is not None:
            query = query.where(Payment.id > last)
        ids = list(db.session.scalars(query))
        if not ids:
            return
        yield ids
        last = ids[-1]
