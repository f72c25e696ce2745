"""Use cases for what Midtrans says about a payment: notifications and status answers."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from tiketq.extensions import db
from tiketq.gateway import (
    Gateway,
    GatewayError,
    GatewayNotification,
    InvalidNotification,
    InvalidSignature,
    TransactionNotFound,
)
from tiketq.payments import queries
from tiketq.payments.models import (
    Notification,
    NotificationOutcome,
    OutboxMessage,
    Payment,
    append_row,
    utcnow,
)
from tiketq.payments.status import (
    OPEN,
    PAID,
    GatewayOutcome,
    PaymentStatus,
    can_transition,
    from_midtrans,
)

log = logging.getLogger(__name__)

# PostgreSQL text refuses NUL, and UTF-8 cannot encode a lone UTF-16 surrogate.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


# Changes other services hear about, by the status a payment reaches.
ANNOUNCED = {
    PaymentStatus.SUCCESS: "payment.succeeded",
    PaymentStatus.FAILED: "payment.failed",
    PaymentStatus.EXPIRED: "payment.expired",
    PaymentStatus.CANCELED: "payment.canceled",
    PaymentStatus.REFUNDED: "payment.refunded",
}
# Outcomes after which a redelivery of the same notification changes nothing.
_SETTLED_OUTCOMES = {
    NotificationOutcome.APPLIED,
    NotificationOutcome.DUPLICATE,
    NotificationOutcome.STALE,
    NotificationOutcome.FLAGGED,
    NotificationOutcome.AMOUNT_MISMATCH,
    NotificationOutcome.UNSUPPORTED,
}
# Redeliveries and late news, answered without a change: the bulk of a busy day's traffic.
_ROUTINE_OUTCOMES = {NotificationOutcome.DUPLICATE, NotificationOutcome.STALE}


@dataclass(frozen=True)
class StoredNotification:
    """An inbox row that passed the signature check, as much of it as applying needs."""

    id: int
    dedupe_key: str | None


@dataclass(frozen=True)
class Receipt:
    """What became of one received notification, as its inbox row now says."""

    notification_id: int
    outcome: NotificationOutcome
    detail: str | None


def receive_notification(
    raw: bytes, *, gateway: Gateway, confirm_paid: bool = False, now: datetime | None = None
) -> Receipt:
    """Store a Midtrans notification, then apply it; the receipt says what became of it.

    The row is committed before anything is applied, so a notification that cannot be applied
    now (database trouble, an order we do not know yet) is never lost.
    """
    row: dict[str, object] = {
        "raw_body": _UNSTORABLE.sub("\ufffd", raw.decode("utf-8", errors="replace")),
        "received_at": now or utcnow(),
    }
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        return _refuse(row, NotificationOutcome.MALFORMED, "body is not a JSON object")
    if _has_unstorable_text(body):
        # No real notification has these; storing them as fields would fail and make Midtrans retry.
        return _refuse(row, NotificationOutcome.MALFORMED, "body has a NUL or a lone surrogate")
    row |= {
        "order_id": _clip(body.get("order_id"), 64),
        "transaction_status": _clip(body.get("transaction_status"), 32),
        "status_code": _clip(body.get("status_code"), 8),
        "gross_amount": _clip(body.get("gross_amount"), 32),
    }
    try:
        notification = gateway.parse_notification(body)
    except InvalidSignature as exc:
        log.warning("notification refused: %s", exc, extra={"order_id": row["order_id"]})
        return _refuse(row, NotificationOutcome.BAD_SIGNATURE, str(exc))
    except InvalidNotification as exc:
        return _refuse(row | {"signature_ok": True}, NotificationOutcome.MALFORMED, str(exc))
    stored = StoredNotification(
        _insert(row | {"signature_ok": True, "dedupe_key": notification.dedupe_key}),
        notification.dedupe_key,
    )
    db.session.commit()
    return apply_notification(stored, notification, gateway=gateway, confirm_paid=confirm_paid)


def apply_notification(
    stored: StoredNotification,
    notification: GatewayNotification,
    *,
    gateway: Gateway,
    confirm_paid: bool = False,
) -> Receipt:
    """Apply a stored, verified notification to its payment under a row lock, then commit."""
    payment = db.session.scalar(_LOCK_PAYMENT, {"gateway_order_id": notification.order_id})
    if payment is None:
        return _close(stored, NotificationOutcome.UNKNOWN_ORDER, "no payment has this order id yet")
    if _seen_before(stored):
        return _close(
            stored, NotificationOutcome.DUPLICATE, "same notification already handled", payment
        )
    if confirm_paid and _means_paid(notification):
        # Midtrans's own recommendation: the status API is the truth before money is booked.
        notification = gateway.parse_notification(gateway.get_status(notification.order_id).raw)
    outcome, detail = apply_gateway_state(payment, notification, source="webhook", inbox=stored)
    # The inbox keeps every outcome; the log tells of those that changed or flagged something.
    log.log(
        logging.DEBUG if outcome in _ROUTINE_OUTCOMES else logging.INFO,
        "notification %s",
        outcome.value,
        extra={
            "payment_id": str(payment.id),
            "order_id": payment.order_id,
            "status": payment.status,
        },
    )
    return _close(stored, outcome, detail, payment, applied=True)


def fetch_gateway_state(payment: Payment, gateway: Gateway) -> GatewayNotification | None:
    """Midtrans's current word on a payment; None before the traveller chose a method."""
    try:
        body = gateway.get_status(payment.gateway_order_id).raw
    except TransactionNotFound:
        return None
    try:
        return gateway.parse_notification(body)
    except (InvalidSignature, InvalidNotification) as exc:
        raise GatewayError("core.status", f"status answer rejected: {exc}") from exc


def apply_gateway_state(
    payment: Payment,
    notification: GatewayNotification,
    *,
    source: str,
    inbox: StoredNotification | None = None,
) -> tuple[NotificationOutcome, str | None]:
    """Bring a row-locked payment in line with what Midtrans says; the caller commits."""
    target = from_midtrans(notification.transaction_status, notification.fraud_status)
    if target is None:
        return NotificationOutcome.UNSUPPORTED, (
            f"unknown transaction_status {notification.transaction_status!r}"
        )
    outcome, detail = _apply(payment, target, notification, source=source, inbox=inbox)
    if outcome is not NotificationOutcome.STALE:
        _keep_details(payment, notification)
    return outcome, detail


def _means_paid(notification: GatewayNotification) -> bool:
    target = from_midtrans(notification.transaction_status, notification.fraud_status)
    return target is not None and target.status is PaymentStatus.SUCCESS


def _keep_details(payment: Payment, notification: GatewayNotification) -> None:
    payment.payment_details = {**payment.payment_details, **notification.details}
    payment.payment_type = notification.payment_type or payment.payment_type
    payment.gateway_transaction_id = notification.transaction_id or payment.gateway_transaction_id


def _apply(
    payment: Payment,
    target: GatewayOutcome,
    notification: GatewayNotification,
    *,
    source: str,
    inbox: StoredNotification | None,
) -> tuple[NotificationOutcome, str | None]:
    """Decide and make the change one notification asks for; the status table has the last word."""
    record: dict[str, Any] = {"source": source, "notification_id": inbox.id if inbox else None}
    if (
        notification.currency not in (None, "IDR")
        or notification.charged_amount() != payment.amount
    ):
        detail = "amount_mismatch"
        data = {"gross_amount": str(notification.gross_amount), "currency": notification.currency}
        if target.status in PAID and payment.status is PaymentStatus.PENDING:
            payment.transition_to(PaymentStatus.PROCESSING, detail=detail, data=data, **record)
            payment.needs_review = True
        else:
            payment.annotate(detail, review=True, data=data, **record)
        return (
            NotificationOutcome.AMOUNT_MISMATCH,
            f"{notification.gross_amount} != {payment.amount}",
        )

    if target.status is PaymentStatus.SUCCESS and payment.status not in PAID | OPEN:
        counted = queries.counted_attempt(payment.order_id)
        if payment.status is not PaymentStatus.FAILED or counted is not None:
            reason = {
                PaymentStatus.CANCELED: "paid_after_cancel",
                PaymentStatus.EXPIRED: "paid_after_expiry",
            }.get(payment.status, "paid_twice")
            payment.annotate(reason, review=True, data={"needs_refund": True}, **record)
            return NotificationOutcome.FLAGGED, reason

    if target.status is payment.status:
        if target.detail is None or target.detail == payment.status_detail:
            return NotificationOutcome.DUPLICATE, None
        payment.annotate(target.detail, review=target.review, **record)
        _book_refund(payment, notification)
        return NotificationOutcome.APPLIED, target.detail

    if target.status is PaymentStatus.REFUNDED and payment.status in OPEN:
        # A refund that overtook its settlement (the settlement is being retried) proves the
        # payment was made: book it first, so history and messages read as if both came in order.
        _move(payment, GatewayOutcome(PaymentStatus.SUCCESS), notification, record)

    if not can_transition(payment.status, target.status):
        if payment.status in PAID and target.status is PaymentStatus.FAILED:
            # Permata, Mandiri bill and Indomaret can rarely reverse a settlement within minutes.
            payment.annotate("reversed_after_settlement", review=True, **record)
            return NotificationOutcome.FLAGGED, "reversed_after_settlement"
        return NotificationOutcome.STALE, f"{payment.status} does not go back to {target.status}"

    _move(payment, target, notification, record)
    _book_refund(payment, notification)
    _keep_details(payment, notification)
    return NotificationOutcome.APPLIED, target.detail


def _move(
    payment: Payment,
    target: GatewayOutcome,
    notification: GatewayNotification,
    record: dict[str, Any],
) -> None:
    payment.transition_to(target.status, detail=target.detail, **record)
    payment.needs_review = payment.needs_review or target.review
    if target.status is PaymentStatus.SUCCESS:
        payment.paid_at = notification.settled_at or notification.transaction_time or utcnow()
    announce(payment)


def _book_refund(payment: Payment, notification: GatewayNotification) -> None:
    if payment.status is PaymentStatus.REFUNDED and notification.refund_amount is None:
        payment.refunded_amount = payment.amount
    elif notification.refund_amount is not None:
        payment.refunded_amount = min(payment.amount, int(notification.refund_amount))


def announce(payment: Payment) -> None:
    """Queue a message for other services about the payment's new status, in this transaction."""
    event_type = ANNOUNCED.get(payment.status)
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


# Built once: constructing a statement costs more than running a cached one. The inbox is
# written with Core statements; the ORM's flush and reload after commit would cost more than the
# work itself on a row written and read once per request.
_INBOX = Notification.__table__
_LOCK_PAYMENT = (
    sa.select(Payment)
    .where(Payment.gateway_order_id == sa.bindparam("gateway_order_id"))
    # What the traveller ordered is never read here; it is loaded if something asks.
    .options(sa.orm.defer(Payment.customer), sa.orm.defer(Payment.items))
    .with_for_update()
)
_EARLIER_DELIVERY = (
    sa.select(_INBOX.c.id)
    .where(
        _INBOX.c.dedupe_key == sa.bindparam("dedupe_key"),
        _INBOX.c.id != sa.bindparam("notification_id"),
        # Written into the SQL once: a bound list is expanded into it on every execution.
        _INBOX.c.outcome.in_([sa.literal_column(f"'{o}'") for o in sorted(_SETTLED_OUTCOMES)]),
    )
    .limit(1)
)
_INSERT_INBOX = sa.insert(_INBOX).returning(_INBOX.c.id)
_CLOSE_INBOX = sa.update(_INBOX).where(_INBOX.c.id == sa.bindparam("notification_id"))


def _seen_before(stored: StoredNotification) -> bool:
    params = {"dedupe_key": stored.dedupe_key, "notification_id": stored.id}
    return db.session.execute(_EARLIER_DELIVERY, params).first() is not None


def _insert(row: dict[str, object]) -> int:
    return db.session.execute(_INSERT_INBOX, row).scalar_one()


def _refuse(row: dict[str, object], outcome: NotificationOutcome, detail: str) -> Receipt:
    """Store a notification that cannot be applied, with why, in one statement."""
    detail = detail[:255]
    notification_id = _insert(row | {"outcome": outcome.value, "detail": detail})
    db.session.commit()
    return Receipt(notification_id, outcome, detail)


def _close(
    stored: StoredNotification,
    outcome: NotificationOutcome,
    detail: str | None,
    payment: Payment | None = None,
    *,
    applied: bool = False,
) -> Receipt:
    """Write the outcome on the inbox row and commit it with the payment's changes."""
    detail = detail[:255] if detail else None
    changes: dict[str, object] = {
        "notification_id": stored.id,
        "outcome": outcome.value,
        "detail": detail,
    }
    if payment is not None:
        changes["payment_id"] = payment.id
    if applied:
        changes["applied_at"] = utcnow()
    db.session.execute(_CLOSE_INBOX, changes)
    db.session.commit()
    return Receipt(stored.id, outcome, detail)


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
