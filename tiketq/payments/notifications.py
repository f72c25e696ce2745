"""Use cases for what Midtrans says about a payment: notifications and status answers."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime

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


def receive_notification(
    raw: bytes, *, gateway: Gateway, confirm_paid: bool = False, now: datetime | None = None
) -> Notification:
    """Store a Midtrans notification, then apply it; the stored row says what became of it.

    The row is committed before anything is applied, so a notification that cannot be applied
    now (database trouble, an order we do not know yet) is never lost.
    """
    text = _UNSTORABLE.sub("\ufffd", raw.decode("utf-8", errors="replace"))
    inbox = Notification(raw_body=text, received_at=now or utcnow())
    db.session.add(inbox)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        return _close(inbox, NotificationOutcome.MALFORMED, "body is not a JSON object")
    if _has_unstorable_text(body):
        # No real notification has these; storing them as fields would fail and make Midtrans retry.
        return _close(inbox, NotificationOutcome.MALFORMED, "body has a NUL or a lone surrogate")
    inbox.order_id = _clip(body.get("order_id"), 64)
    inbox.transaction_status = _clip(body.get("transaction_status"), 32)
    inbox.status_code = _clip(body.get("status_code"), 8)
    inbox.gross_amount = _clip(body.get("gross_amount"), 32)
    try:
        notification = gateway.parse_notification(body)
    except InvalidSignature as exc:
        log.warning("notification refused: %s", exc, extra={"order_id": inbox.order_id})
        return _close(inbox, NotificationOutcome.BAD_SIGNATURE, str(exc))
    except InvalidNotification as exc:
        inbox.signature_ok = True
        return _close(inbox, NotificationOutcome.MALFORMED, str(exc))
    inbox.signature_ok = True
    inbox.dedupe_key = notification.dedupe_key
    db.session.commit()
    return apply_notification(inbox, notification, gateway=gateway, confirm_paid=confirm_paid)


def apply_notification(
    inbox: Notification,
    notification: GatewayNotification,
    *,
    gateway: Gateway,
    confirm_paid: bool = False,
) -> Notification:
    """Apply a stored, verified notification to its payment under a row lock."""
    payment = db.session.scalar(
        sa.select(Payment)
        .where(Payment.gateway_order_id == notification.order_id)
        .with_for_update()
    )
    if payment is None:
        return _close(inbox, NotificationOutcome.UNKNOWN_ORDER, "no payment has this order id yet")
    inbox.payment_id = payment.id
    if _seen_before(inbox):
        return _close(inbox, NotificationOutcome.DUPLICATE, "same notification already handled")
    if confirm_paid and _means_paid(notification):
        # Midtrans's own recommendation: the status API is the truth before money is booked.
        notification = gateway.parse_notification(gateway.get_status(notification.order_id).raw)
    outcome, detail = apply_gateway_state(payment, notification, source="webhook", inbox=inbox)
    inbox.applied_at = utcnow()
    log.info(
        "notification %s",
        outcome.value,
        extra={
            "payment_id": str(payment.id),
            "order_id": payment.order_id,
            "status": payment.status,
        },
    )
    return _close(inbox, outcome, detail)


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
    inbox: Notification | None = None,
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
    inbox: Notification | None,
) -> tuple[NotificationOutcome, str | None]:
    """Decide and make the change one notification asks for; the status table has the last word."""
    record = {"source": source, "notification": inbox}
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

    if not can_transition(payment.status, target.status):
        if payment.status in PAID and target.status is PaymentStatus.FAILED:
            # Permata, Mandiri bill and Indomaret can rarely reverse a settlement within minutes.
            payment.annotate("reversed_after_settlement", review=True, **record)
            return NotificationOutcome.FLAGGED, "reversed_after_settlement"
        return NotificationOutcome.STALE, f"{payment.status} does not go back to {target.status}"

    payment.transition_to(target.status, detail=target.detail, **record)
    payment.needs_review = payment.needs_review or target.review
    if target.status is PaymentStatus.SUCCESS:
        payment.paid_at = notification.settled_at or notification.transaction_time or utcnow()
    _book_refund(payment, notification)
    _keep_details(payment, notification)
    announce(payment)
    return NotificationOutcome.APPLIED, target.detail


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
    db.session.add(
        OutboxMessage(
            payment_id=payment.id,
            event_type=event_type,
            payload={
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
        )
    )


def _seen_before(inbox: Notification) -> bool:
    # No autoflush: the inbox row's pending changes go out once, with its outcome, in _close.
    with db.session.no_autoflush:
        earlier = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Notification)
            .where(
                Notification.dedupe_key == inbox.dedupe_key,
                Notification.id != inbox.id,
                Notification.outcome.in_([o.value for o in _SETTLED_OUTCOMES]),
            )
        )
    return bool(earlier)


def _close(inbox: Notification, outcome: NotificationOutcome, detail: str | None) -> Notification:
    inbox.outcome = outcome
    inbox.detail = detail[:255] if detail else None
    db.session.commit()
    return inbox


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
