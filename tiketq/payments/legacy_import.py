"""Carry the replaced payment service's payments over: one payment here per row of its table."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tiketq.extensions import db
from tiketq.formats import midtrans_time
from tiketq.payments.models import OutboxMessage, Payment, PaymentEvent, utcnow
from tiketq.payments.orders import PAYMENT_METHODS, caller_order_id_problem, gateway_order_id
from tiketq.payments.status import OPEN, PAID, PaymentStatus

SOURCE = "import"
# The old service stored its native enum's names (upper case); callers know the lower-case words.
LEGACY_STATUSES: dict[str, PaymentStatus] = {
    "PENDING": PaymentStatus.PENDING,
    "PROCESSING": PaymentStatus.PROCESSING,
    "SUCCESS": PaymentStatus.SUCCESS,
    "FAILED": PaymentStatus.FAILED,
    "CANCELED": PaymentStatus.CANCELED,
    "REFUNDED": PaymentStatus.REFUNDED,
    "EXPIRED": PaymentStatus.EXPIRED,
}
# The old service's expiry_duration default: what Snap was given when a row says nothing.
DEFAULT_EXPIRY = timedelta(hours=1)
# Midtrans's times (settlement_time) are Jakarta time without a zone.
SNAP_TOKEN_MAX = 64
ALREADY_HERE = "order already has a payment here"
PRESENT = "present"
CONFIRMED_BY = "legacy payment service"


class Unimportable(Exception):
    """An old row that cannot become a payment as it stands; the message says why."""


@dataclass(frozen=True)
class LegacyRow:
    """The columns of the old `payments` table that the import reads."""

    payment_id: str
    order_id: str
    status: str
    amount: Decimal
    payment_method: str
    expiry_time: datetime | None
    token: str | None
    redirect_url: str | None
    payment_url: str | None
    additional_data: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Carried:
    """What an old row becomes here: the payment's fields and its import event's data."""

    legacy_id: str
    order_id: str
    status: PaymentStatus
    amount: int
    payment_method: str | None
    snap_token: str | None
    snap_redirect_url: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    paid_at: datetime | None
    event_data: dict[str, Any]


@dataclass
class Summary:
    """What a run did (or would do): imported by status, already present, skipped with reasons."""

    imported: Counter[PaymentStatus] = field(default_factory=Counter)
    present: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def lines(self, *, dry_run: bool) -> list[str]:
        """The summary as the command prints it."""
        by_status = ", ".join(f"{s.value} {n}" for s, n in sorted(self.imported.items()))
        total = sum(self.imported.values())
        lines = ["dry run: nothing written"] if dry_run else []
        lines.append(f"imported: {total}" + (f" ({by_status})" if by_status else ""))
        lines.append(f"already present: {self.present}")
        lines.append(f"skipped: {len(self.skipped)}")
        lines.extend(f"  {legacy_id}: {reason}" for legacy_id, reason in self.skipped)
        return lines


# Reading the old table.


def legacy_table(schema: str) -> sa.Table:
    """The old table, as much of it as the import reads; status as text, not its native enum."""
    text_columns = ("payment_id", "order_id", "status", "payment_method", "token")
    return sa.Table(
        "payments",
        sa.MetaData(),
        *(sa.Column(name, sa.String) for name in text_columns),
        sa.Column("amount", sa.Numeric(15, 2)),
        sa.Column("redirect_url", sa.Text),
        sa.Column("payment_url", sa.Text),
        sa.Column("additional_data", sa.Text),
        *(sa.Column(name, sa.DateTime) for name in ("expiry_time", "created_at", "updated_at")),
        schema=schema,
    )


def read_rows(url: str, schema: str) -> list[LegacyRow]:
    """Every row of the old table, oldest first, read in a read-only transaction."""
    table = legacy_table(schema)
    names = [f.name for f in fields(LegacyRow)]
    query = sa.select(*(table.c[name] for name in names)).order_by(
        table.c.created_at, table.c.payment_id
    )
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            # The old database is only ever read: a mistake here cannot change it.
            connection = connection.execution_options(postgresql_readonly=True)
            return [LegacyRow(**row) for row in connection.execute(query).mappings()]
    finally:
        engine.dispose()


# Mapping one row: pure.


def carry(row: LegacyRow) -> Carried:
    """Map an old row to what it becomes here; raises Unimportable with the reason."""
    status = status_of(row.status)
    problem = caller_order_id_problem(row.order_id)
    if problem is not None:
        raise Unimportable(f"order id {row.order_id!r} {problem}")
    if row.token is not None and len(row.token) > SNAP_TOKEN_MAX:
        raise Unimportable(f"token longer than {SNAP_TOKEN_MAX} characters")
    extra = additional_data(row.additional_data)
    created_at = as_utc(row.created_at)
    expires_at, expires_from = expiry(row.expiry_time, extra, created_at)
    paid_at, paid_from = paid_time(status, extra, as_utc(row.updated_at))
    return Carried(
        legacy_id=row.payment_id,
        order_id=row.order_id,
        status=status,
        amount=rupiah(row.amount),
        # Only a method we know is a useful hint for a new attempt's Snap page.
        payment_method=row.payment_method if row.payment_method in PAYMENT_METHODS else None,
        snap_token=row.token,
        # payment_url is the same Snap redirect URL; some rows may hold only that one.
        snap_redirect_url=row.redirect_url or row.payment_url,
        created_at=created_at,
        updated_at=as_utc(row.updated_at),
        expires_at=expires_at,
        paid_at=paid_at,
        event_data={
            "legacy_payment_id": row.payment_id,
            "legacy_status": row.status,
            "expires_at_from": expires_from,
            **({"paid_at_from": paid_from} if paid_from else {}),
        },
    )


def status_of(name: str) -> PaymentStatus:
    """Our status for the old enum name."""
    try:
        return LEGACY_STATUSES[name]
    except KeyError:
        raise Unimportable(f"unknown status {name}") from None


def rupiah(amount: Decimal) -> int:
    """Whole rupiah from NUMERIC(15,2); a fraction is refused, never rounded."""
    if amount != amount.to_integral_value():
        raise Unimportable(f"fractional amount {amount}")
    if amount <= 0:
        raise Unimportable(f"amount {amount} is not positive")
    return int(amount)


def as_utc(moment: datetime) -> datetime:
    """A stored time, timezone-aware: the old service's naive times are UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def additional_data(text: str | None) -> dict[str, Any]:
    """The row's additional_data JSON object; anything unreadable counts as empty."""
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def expiry(
    column: datetime | None, extra: dict[str, Any], created_at: datetime
) -> tuple[datetime, str]:
    """When the time to pay ends, and what said so.

    The old service sent Snap `expiry_duration` hours but stored its metadata `expiry_time` as
    that many minutes, so the duration is believed and that `expiry_time` never is.
    """
    if column is not None:
        return as_utc(column), "expiry_time"
    hours = extra.get("expiry_duration")
    if isinstance(hours, int) and not isinstance(hours, bool) and hours > 0:
        return created_at + timedelta(hours=hours), "expiry_duration"
    return created_at + DEFAULT_EXPIRY, "default"


def paid_time(
    status: PaymentStatus, extra: dict[str, Any], updated_at: datetime
) -> tuple[datetime | None, str | None]:
    """When a paid row was paid, and what said so: Midtrans's settlement_time, else its last update.

    The last update is when the old service saw it paid: never before the payment itself.
    """
    if status not in PAID:
        return None, None
    settled = midtrans_time(extra.get("settlement_time"))
    if settled is not None:
        return settled, "settlement_time"
    return updated_at, "updated_at"


# Writing.


def import_rows(
    rows: Iterable[LegacyRow], *, dry_run: bool = False, now: datetime | None = None
) -> Summary:
    """Create a payment for each row not here yet, in one transaction; a dry run writes nothing."""
    now = now or utcnow()
    summary = Summary()
    # Orders taken in this run: a dry run writes nothing the next row's lookup could find.
    taken: set[str] = set()
    for row in rows:
        try:
            carried = carry(row)
        except Unimportable as exc:
            summary.skipped.append((row.payment_id, str(exc)))
            continue
        standing = ALREADY_HERE if carried.order_id in taken else _standing(carried)
        if standing == PRESENT:
            summary.present += 1
        elif standing is not None:
            summary.skipped.append((carried.legacy_id, standing))
        elif dry_run or _created(carried, now):
            taken.add(carried.order_id)
            summary.imported[carried.status] += 1
        else:
            summary.skipped.append((carried.legacy_id, ALREADY_HERE))
    if dry_run:
        db.session.rollback()
    else:
        db.session.commit()
    return summary


def _standing(carried: Carried) -> str | None:
    """PRESENT if this row was imported before, a reason to skip it, or None to import it."""
    payments = db.session.scalars(
        sa.select(Payment.id).where(Payment.order_id == carried.order_id)
    ).all()
    if not payments:
        return None
    # Annotated: the Any in the column's type makes mypy miss select()'s overload for it.
    imports: Iterable[dict[str, Any]] = db.session.scalars(
        sa.select(PaymentEvent.data).where(
            PaymentEvent.payment_id.in_(payments), PaymentEvent.source == SOURCE
        )
    )
    if any(data.get("legacy_payment_id") == carried.legacy_id for data in imports):
        return PRESENT
    return ALREADY_HERE


def _created(carried: Carried, now: datetime) -> bool:
    """Add the payment in a savepoint; False if the order got a payment here meanwhile."""
    try:
        with db.session.begin_nested():
            payment = _payment(carried, now)
            db.session.add(payment)
            if carried.status in PAID:
                # The message refers to the payment's row: that goes in first.
                db.session.flush()
                db.session.add(_confirmed_before(payment, carried, now))
    except IntegrityError:
        if _standing(carried) is None:
            raise
        return False
    return True


def _payment(carried: Carried, now: datetime) -> Payment:
    payment = Payment(
        id=uuid.uuid4(),
        order_id=carried.order_id,
        attempt=1,
        # The old service gave Midtrans the caller's order id: its notifications name it.
        gateway_order_id=gateway_order_id(carried.order_id, 1),
        amount=carried.amount,
        currency="IDR",
        status=carried.status,
        payment_method=carried.payment_method,
        snap_token=carried.snap_token,
        snap_redirect_url=carried.snap_redirect_url,
        customer={},
        items=[],
        expires_at=carried.expires_at,
        paid_at=carried.paid_at,
        # The old service recorded a partial refund as refunded too; ours means all of it.
        refunded_amount=carried.amount if carried.status is PaymentStatus.REFUNDED else 0,
        # The old rows changed only when someone read them: an open one may be paid already.
        next_check_at=now if carried.status in OPEN else None,
        request_fingerprint=hashlib.sha256(f"legacy:{carried.legacy_id}".encode()).hexdigest(),
        created_at=carried.created_at,
        updated_at=carried.updated_at,
    )
    payment.events.append(
        PaymentEvent(to_status=carried.status, source=SOURCE, data=carried.event_data)
    )
    return payment


def _confirmed_before(payment: Payment, carried: Carried, now: datetime) -> OutboxMessage:
    """The old service's confirmation, recorded as sent so that it is never sent again.

    The transaction service marks an order PAID on every confirmation, whatever its state (a
    canceled or completed order too), so a paid import must not confirm again. Dispatched with
    no deliveries, the message holds the (payment, payment.succeeded) slot that a confirmation
    would take, and the audit sees the confirmation accounted for.
    """
    return OutboxMessage(
        payment_id=payment.id,
        event_type="payment.succeeded",
        payload={
            "event_type": "payment.succeeded",
            "payment_id": str(payment.id),
            "order_id": carried.order_id,
            "legacy_payment_id": carried.legacy_id,
            "confirmed_by": CONFIRMED_BY,
        },
        dispatched_at=now,
    )
