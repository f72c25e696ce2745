"""What Midtrans tells us: notifications stored at the door, status answers applied by the worker.

A notification is only a trigger. Midtrans signs three of its fields; the rest are claims. So the
door checks the signature and the status code, stores the row and answers, and the worker asks
Midtrans's status API about the order (one call for every notification waiting for it) and
applies that answer, the one way a payment learns anything from Midtrans.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.dml import ReturningInsert

from tiketq.extensions import db
from tiketq.gateway import (
    Answer,
    Gateway,
    GatewayError,
    GatewayTimeout,
    GatewayUnavailable,
    InvalidNotification,
    InvalidSignature,
    StatusMismatch,
    TransactionNotFound,
)
from tiketq.payments import queries, rules
from tiketq.payments.models import (
    Notification,
    OutboxMessage,
    Payment,
    append_row,
    utcnow,
    work_failed,
)
from tiketq.payments.status import NotificationOutcome, PaymentStatus

log = logging.getLogger(__name__)

# PostgreSQL text refuses NUL, and UTF-8 cannot encode a lone UTF-16 surrogate.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# A refused body is kept only this far: enough to see what it was, too little to fill a disk.
REFUSED_BODY_KEPT = 2048
# Applying an order's rows raised this many times: they stay failed for a person to look at.
MAX_APPLY_ATTEMPTS = 5
# Midtrans down or too slow to answer a status read (which is safe to repeat): never given up on.
_OUTAGES = (GatewayUnavailable, GatewayTimeout)
# Notifications for unknown orders are looked at again, once the order exists, for this long.
UNKNOWN_ORDER_WINDOW = timedelta(days=2)
_RETRY_FIRST = timedelta(seconds=5)
_RETRY_MAX = timedelta(minutes=10)

# Outcomes after which a redelivery of the same notification changes nothing.
_SETTLED_OUTCOMES = (
    NotificationOutcome.APPLIED,
    NotificationOutcome.DUPLICATE,
    NotificationOutcome.STALE,
    NotificationOutcome.FLAGGED,
    NotificationOutcome.AMOUNT_MISMATCH,
    NotificationOutcome.UNSUPPORTED,
)
# Redeliveries and late news, answered without a change: the bulk of a busy day's traffic.
_ROUTINE_OUTCOMES = {NotificationOutcome.DUPLICATE, NotificationOutcome.STALE}


@dataclass(frozen=True)
class Receipt:
    """What the door did with one notification."""

    notification_id: int
    outcome: NotificationOutcome
    detail: str | None


def receive_notification(raw: bytes, *, gateway: Gateway, now: datetime | None = None) -> Receipt:
    """Store a notification for the worker, or refuse it; no Midtrans call, no payment lock."""
    now = now or utcnow()
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        return _refuse(raw, now, NotificationOutcome.MALFORMED, "body is not a JSON object")
    fields: dict[str, Any] = {
        "order_id": _clip(body.get("order_id"), 64),
        "transaction_status": _clip(body.get("transaction_status"), 32),
        "status_code": _clip(body.get("status_code"), 8),
        "gross_amount": _clip(body.get("gross_amount"), 32),
    }
    if _has_unstorable_text(body):
        # No real notification has these; storing them as fields would fail and make Midtrans retry.
        return _refuse(
            raw, now, NotificationOutcome.MALFORMED, "body has a NUL or a lone surrogate", fields
        )
    try:
        hint = gateway.verify_notification(body)
    except InvalidSignature as exc:
        return _refuse(raw, now, NotificationOutcome.BAD_SIGNATURE, str(exc), fields)
    except StatusMismatch as exc:
        fields["signature_ok"] = True
        return _refuse(raw, now, NotificationOutcome.STATUS_MISMATCH, str(exc), fields)
    except InvalidNotification as exc:
        fields["signature_ok"] = True
        return _refuse(raw, now, NotificationOutcome.MALFORMED, str(exc), fields)
    row = fields | {
        "raw_body": raw.decode("utf-8", errors="replace"),
        "body_length": len(raw),
        "received_at": now,
        "signature_ok": True,
        "dedupe_key": hint.dedupe_key,
        "outcome": NotificationOutcome.RECEIVED.value,
        "next_attempt_at": now,
    }
    notification_id = db.session.execute(_INSERT_INBOX, row).scalar_one()
    db.session.commit()
    return Receipt(notification_id, NotificationOutcome.RECEIVED, None)


def _refuse(
    raw: bytes,
    now: datetime,
    outcome: NotificationOutcome,
    detail: str,
    fields: dict[str, Any] | None = None,
) -> Receipt:
    """Store what was refused, truncated, with its length and hash, in one statement."""
    detail = detail[:255]
    log.warning(
        "notification refused: %s",
        detail,
        extra={"outcome": outcome.value, "order_id": (fields or {}).get("order_id")},
    )
    kept = raw[:REFUSED_BODY_KEPT].decode("utf-8", errors="replace")
    row = (fields or {}) | {
        "raw_body": _UNSTORABLE.sub("\ufffd", kept),
        "body_length": len(raw),
        "body_sha256": hashlib.sha256(raw).hexdigest(),
        "received_at": now,
        "outcome": outcome.value,
        "detail": detail,
    }
    for name in ("order_id", "transaction_status", "status_code", "gross_amount"):
        if isinstance(row.get(name), str):
            row[name] = _UNSTORABLE.sub("\ufffd", row[name])
    notification_id = db.session.execute(_INSERT_INBOX, row).scalar_one()
    db.session.commit()
    return Receipt(notification_id, outcome, detail)


def apply_waiting(
    gateway: Gateway, *, now: datetime | None = None, limit: int = 50, threads: int = 1
) -> int:
    """Apply waiting notifications order by order; returns how many rows were handled.

    An order's rows are taken together under its payment's row lock and cost one status call.
    Whatever goes wrong with one order is recorded on its rows and the round goes on. With
    `threads` > 1, that many orders are applied at once, each in a session of its own: most of
    an order's time is spent waiting for Midtrans's answer.
    """
    # Every waiting row has an order id, which its signature covers; the column allows none for
    # the refused.
    orders = [
        order_id
        for order_id in db.session.scalars(_ORDERS_WAITING.limit(limit), _window(now or utcnow()))
        if order_id is not None
    ]
    db.session.rollback()
    if threads <= 1 or len(orders) <= 1:
        return sum(_apply_isolated(order_id, gateway, now) for order_id in orders)
    # Flask types the current_app proxy as the app itself, which has no such method.
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def in_own_session(order_id: str) -> int:
        with app.app_context():
            try:
                return _apply_isolated(order_id, gateway, now)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inbox") as pool:
        return sum(pool.map(in_own_session, orders))


def _apply_isolated(order_id: str, gateway: Gateway, now: datetime | None) -> int:
    # Each order's own clock: in a long round, a round-wide one would misdate applied_at.
    at = now or utcnow()
    claimed: list[int] = []
    try:
        return _apply_order(order_id, gateway, at, claimed)
    except OperationalError:
        raise  # the database is gone: the job ends and the next round tries again
    except Exception as exc:
        db.session.rollback()
        _record_failure(claimed, exc, at)
        return len(claimed)


def _window(now: datetime) -> dict[str, datetime]:
    return {"now": now, "unknown_since": now - UNKNOWN_ORDER_WINDOW}


def _apply_order(order_id: str, gateway: Gateway, now: datetime, claimed: list[int]) -> int:
    rows = list(db.session.scalars(_CLAIM_ROWS, {"order_id": order_id, **_window(now)}))
    if not rows:
        db.session.rollback()  # another worker has them
        return 0
    claimed.extend(row.id for row in rows)
    payment = db.session.scalar(_LOCK_PAYMENT, {"gateway_order_id": order_id})
    if payment is None:
        _close(rows, NotificationOutcome.UNKNOWN_ORDER, "no payment has this order id yet", now)
        db.session.commit()
        return len(rows)
    fresh, copies = _split_copies(rows)
    if not fresh:
        _close(copies, NotificationOutcome.DUPLICATE, "same notification already handled", now)
        db.session.commit()
        return len(rows)
    try:
        answer = fetch_answer(payment, gateway)
    except GatewayError as exc:
        _retry_later(rows, exc, now)
        db.session.commit()
        return len(rows)
    payment.last_checked_at = now
    if answer is None:
        # A signed notification about a transaction Midtrans does not know: ask again later.
        _retry_later(rows, TransactionNotFound("core.status", "no such transaction"), now)
        db.session.commit()
        return len(rows)
    outcome, reason = apply_answer(payment, answer, source="webhook", notification_id=fresh[0].id)
    _close(fresh[:1], outcome, reason, now, payment)
    _close(fresh[1:], NotificationOutcome.DUPLICATE, f"answered with #{fresh[0].id}", now, payment)
    _close(copies, NotificationOutcome.DUPLICATE, "same notification already handled", now, payment)
    log.log(
        logging.DEBUG if outcome in _ROUTINE_OUTCOMES else logging.INFO,
        "notification %s",
        outcome.value,
        extra={
            "payment_id": str(payment.id),
            "order_id": payment.order_id,
            "status": payment.status,
            "notifications": len(rows),
        },
    )
    db.session.commit()
    return len(rows)


def _split_copies(rows: list[Notification]) -> tuple[list[Notification], list[Notification]]:
    """Rows with news, and copies of a notification already handled (which cost no call)."""
    keys = {row.dedupe_key for row in rows if row.dedupe_key}
    handled = set(
        db.session.scalars(_HANDLED_KEYS, {"keys": sorted(keys), "ids": [row.id for row in rows]})
        if keys
        else ()
    )
    fresh: list[Notification] = []
    copies: list[Notification] = []
    for row in rows:
        (copies if row.dedupe_key in handled else fresh).append(row)
    return fresh, copies


def _close(
    rows: Iterable[Notification],
    outcome: NotificationOutcome,
    detail: str | None,
    now: datetime,
    payment: Payment | None = None,
) -> None:
    for row in rows:
        row.outcome = outcome.value
        row.detail = detail[:255] if detail else None
        row.attempts += 1
        row.next_attempt_at = None
        row.last_error = None
        if payment is not None:
            row.payment_id = payment.id
            row.applied_at = now


def _retry_later(rows: Iterable[Notification], exc: GatewayError, now: datetime) -> None:
    """Midtrans did not answer usefully: the rows wait, and an outage is never given up on."""
    for row in rows:
        _try_again_later(
            row, str(exc), now, failed=False, may_give_up=not isinstance(exc, _OUTAGES)
        )


def _record_failure(ids: list[int], exc: Exception, now: datetime) -> None:
    """Mark an order's rows failed after applying them raised; retried a few times with backoff."""
    log.error(
        "applying notifications failed: %s", exc, exc_info=exc, extra={"notification_ids": ids}
    )
    work_failed.send("inbox", error=exc)
    error = f"{type(exc).__name__}: {exc}"
    # The rollback released the rows: only those no other worker has applied since are marked.
    still_waiting = (
        sa.select(Notification)
        .where(Notification.id.in_(ids), Notification.outcome.in_(_UNSETTLED))
        .with_for_update(skip_locked=True)
    )
    for row in db.session.scalars(still_waiting):
        _try_again_later(row, error, now, failed=True, may_give_up=True)
    db.session.commit()


def _try_again_later(
    row: Notification, error: str, now: datetime, *, failed: bool, may_give_up: bool
) -> None:
    """Count a try at a row and plan the next one, or none once it may give up and has."""
    row.attempts += 1
    row.last_error = error[:255]
    gives_up = may_give_up and row.attempts >= MAX_APPLY_ATTEMPTS
    if failed or gives_up:
        row.outcome = NotificationOutcome.FAILED.value
    row.next_attempt_at = None if gives_up else now + retry_delay(row.attempts)


def retry_delay(attempts: int) -> timedelta:
    """How long an inbox row waits after its `attempts`-th try: doubling, capped."""
    # Annotated: typeshed's int ** int is Any, the exponent might be negative.
    doubled: timedelta = _RETRY_FIRST * 2 ** (attempts - 1)
    return min(doubled, _RETRY_MAX)


def fetch_answer(payment: Payment, gateway: Gateway) -> Answer | None:
    """Midtrans's current word on a payment; None before the traveller chose a method."""
    try:
        return gateway.get_status(
            payment.gateway_order_id,
            transaction_id=payment.gateway_transaction_id,
            payment_type=payment.payment_type,
        )
    except TransactionNotFound:
        return None


def apply_answer(
    payment: Payment,
    answer: Answer,
    *,
    source: str,
    notification_id: int | None = None,
    now: datetime | None = None,
) -> tuple[NotificationOutcome, str | None]:
    """Bring a row-locked payment in line with Midtrans's answer; the caller commits."""
    facts = rules.Facts(
        status=payment.status,
        amount=payment.amount,
        detail=payment.status_detail,
        refunded_amount=payment.refunded_amount,
        # Only asked when it matters: money for an attempt that ended unpaid.
        other_attempt_counts=payment.status is PaymentStatus.FAILED
        and queries.counted_attempt(payment.order_id) is not None,
    )
    decision = rules.decide(facts, answer)
    if decision.keep_details:
        # Before the steps, so that what they announce carries the transaction id and type.
        _keep_details(payment, answer)
    if decision.refunded_amount is not None:
        payment.refunded_amount = decision.refunded_amount
    record: dict[str, Any] = {"source": source, "notification_id": notification_id}
    for step in decision.steps:
        carry_out(payment, step, record, paid_at=answer.paid_at or now or utcnow())
    return decision.outcome, decision.reason


def carry_out(
    payment: Payment, step: rules.Step, record: dict[str, Any], *, paid_at: datetime | None = None
) -> None:
    """Carry out one step of a decision on a row-locked payment, announcing what it says."""
    data = dict(step.data) if step.data else None
    if step.status is payment.status:
        payment.annotate(step.detail, review=step.review, data=data, **record)
    else:
        payment.transition_to(step.status, detail=step.detail, data=data, **record)
        payment.needs_review = payment.needs_review or step.review
    if step.paid:
        payment.paid_at = paid_at or utcnow()
    if step.announce:
        announce(payment, step.announce)


def _keep_details(payment: Payment, answer: Answer) -> None:
    details = dict(answer.details)
    if answer.payment_type:
        details["payment_type"] = answer.payment_type
    payment.payment_details = {**payment.payment_details, **details}
    payment.payment_type = _clip(answer.payment_type, 30) or payment.payment_type
    payment.gateway_transaction_id = (
        _clip(answer.transaction_id, 64) or payment.gateway_transaction_id
    )


def announce(payment: Payment, event_type: str | None = None) -> None:
    """Queue a message for other services about the payment's new status, in this transaction."""
    event_type = event_type or rules.ANNOUNCED.get(payment.status)
    if event_type is None:
        return
    append_row(
        OutboxMessage.__table__,
        {
            "payment_id": payment.id,
            "event_type": event_type,
            "payload": {
                "event_type": event_type,
                "payment_id": str(payment.id),
                "order_id": payment.order_id,
                "gateway_order_id": payment.gateway_order_id,
                "status": payment.status.value,
                "status_detail": payment.status_detail,
                "amount": payment.amount,
                "refunded_amount": payment.refunded_amount,
                "currency": payment.currency,
                "payment_type": payment.payment_type,
                "gateway_transaction_id": payment.gateway_transaction_id,
                "paid_at": payment.paid_at.isoformat() if payment.paid_at else None,
                "occurred_at": utcnow().isoformat(),
            },
        },
    )


# Built once: constructing a statement costs more than running a cached one.
_INBOX = Notification.__table__
# Annotated: a Table's columns are untyped, and an untyped statement's scalar_one() is Never.
_INSERT_INBOX: ReturningInsert[int] = sa.insert(_INBOX).returning(_INBOX.c.id)
# Rows that still wait to be applied: new, retrying, or for an order not known yet.
_UNSETTLED = [
    o.value
    for o in (
        NotificationOutcome.RECEIVED,
        NotificationOutcome.FAILED,
        NotificationOutcome.UNKNOWN_ORDER,
    )
]
_IS_WAITING = sa.and_(
    Notification.outcome.in_(
        [NotificationOutcome.RECEIVED.value, NotificationOutcome.FAILED.value]
    ),
    Notification.next_attempt_at <= sa.bindparam("now"),
)
# Unknown orders are looked at again only once a payment with that order id exists.
_UNKNOWN_NOW_KNOWN = sa.and_(
    Notification.outcome == NotificationOutcome.UNKNOWN_ORDER.value,
    Notification.received_at >= sa.bindparam("unknown_since"),
    sa.exists().where(Payment.gateway_order_id == Notification.order_id),
)
_ORDERS_WAITING = (
    sa.select(Notification.order_id)
    .where(sa.or_(_IS_WAITING, _UNKNOWN_NOW_KNOWN))
    .group_by(Notification.order_id)
    .order_by(sa.func.min(Notification.id))
)
_CLAIM_ROWS = (
    sa.select(Notification)
    .where(
        Notification.order_id == sa.bindparam("order_id"), sa.or_(_IS_WAITING, _UNKNOWN_NOW_KNOWN)
    )
    .order_by(Notification.id)
    .with_for_update(skip_locked=True)
)
_LOCK_PAYMENT = (
    sa.select(Payment)
    .where(Payment.gateway_order_id == sa.bindparam("gateway_order_id"))
    # What the traveller ordered is never read here; it is loaded if something asks.
    .options(sa.orm.defer(Payment.customer), sa.orm.defer(Payment.items))
    .with_for_update()
)
_HANDLED_KEYS = sa.select(Notification.dedupe_key).where(
    Notification.dedupe_key.in_(sa.bindparam("keys", expanding=True)),
    Notification.id.not_in(sa.bindparam("ids", expanding=True)),
    Notification.outcome.in_([o.value for o in _SETTLED_OUTCOMES]),
)


def _has_unstorable_text(body: object) -> bool:
    pending = [body]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend([*value, *value.values()])
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and _UNSTORABLE.search(value):
            return True
    return False


def _clip(value: object, length: int) -> str | None:
    return value[:length] if isinstance(value, str) else None
