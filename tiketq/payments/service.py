"""Use cases of the payments domain; the only code that commits."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tiketq.extensions import db
from tiketq.gateway import (
    CheckoutRequest,
    Gateway,
    GatewayAuthError,
    GatewayError,
    GatewayNotification,
    GatewayRejected,
    GatewayTimeout,
    InvalidNotification,
    InvalidSignature,
)
from tiketq.payments.errors import IdempotencyKeyReused, PaymentConflict
from tiketq.payments.models import (
    Notification,
    NotificationOutcome,
    OutboxMessage,
    Payment,
    PaymentEvent,
    utcnow,
)
from tiketq.payments.orders import ItemLine, gateway_order_id, normalise_items
from tiketq.payments.status import (
    OPEN,
    PAID,
    GatewayOutcome,
    PaymentStatus,
    can_transition,
    from_midtrans,
)

log = logging.getLogger(__name__)

# Longer than any gateway call may take (connect + read timeouts): a payment still without a
# token after this long was abandoned by a process that died mid-call.
CREATE_IN_FLIGHT = timedelta(seconds=60)


@dataclass(frozen=True)
class NewPayment:
    """A validated request to collect an order's amount."""

    order_id: str
    amount: int
    payment_method: str | None
    customer: dict[str, str]
    items: tuple[ItemLine, ...]
    description: str | None
    expiry_hours: int

    def fingerprint(self) -> str:
        """A stable hash of the request, to tell a retry from a different request."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def create_payment(
    new: NewPayment,
    *,
    gateway: Gateway,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Payment:
    """Open a payment for an order, or return the live one a retried request already opened.

    The row is committed before Midtrans is called, so a timeout leaves a record that says
    so instead of a token nobody knows about.
    """
    now = now or utcnow()
    fingerprint = new.fingerprint()
    items = normalise_items(new.order_id, new.amount, new.items)

    if idempotency_key is not None:
        keyed = db.session.scalar(
            sa.select(Payment).where(Payment.idempotency_key == idempotency_key)
        )
        if keyed is not None:
            if keyed.request_fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "Idempotency-Key was already used with a different request body"
                )
            return keyed

    existing = _counted_attempt(new.order_id, lock=True)
    if existing is not None:
        replay = _reuse_or_end(existing, new, now)
        if replay is not None:
            return replay

    attempt = 1 + (
        db.session.scalar(
            sa.select(sa.func.max(Payment.attempt)).where(Payment.order_id == new.order_id)
        )
        or 0
    )
    payment = Payment(
        order_id=new.order_id,
        attempt=attempt,
        gateway_order_id=gateway_order_id(new.order_id, attempt),
        amount=new.amount,
        currency="IDR",
        status=PaymentStatus.PENDING,
        status_detail="creating",
        payment_method=new.payment_method,
        description=new.description,
        customer=dict(new.customer),
        items=[asdict(item) for item in items],
        expires_at=now + timedelta(hours=new.expiry_hours),
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        created_at=now,
        updated_at=now,
    )
    payment.events.append(
        PaymentEvent(to_status=PaymentStatus.PENDING, status_detail="creating", source="api")
    )
    db.session.add(payment)
    try:
        db.session.commit()
    except IntegrityError:
        # A concurrent request for the same order (or key) inserted first.
        db.session.rollback()
        winner = _counted_attempt(new.order_id, lock=False)
        if winner is not None and winner.amount == new.amount and winner.snap_token:
            return winner
        raise PaymentConflict(
            "a payment for this order is being created; retry shortly",
            [{"field": "order_id", "message": "creation in progress"}],
        ) from None

    checkout_request = CheckoutRequest(
        gateway_order_id=payment.gateway_order_id,
        amount=payment.amount,
        items=items,
        customer=payment.customer,
        payment_method=payment.payment_method,
        starts_at=now,
        expires_in_minutes=new.expiry_hours * 60,
    )
    try:
        checkout = gateway.create_checkout(checkout_request)
    except GatewayError as exc:
        payment.transition_to(
            PaymentStatus.FAILED,
            source="api",
            detail=_failure_detail(exc),
            data={"operation": exc.operation, "messages": exc.messages},
        )
        # The key stays usable: a retry with it should get a fresh attempt, not this failure.
        payment.idempotency_key = None
        db.session.commit()
        raise
    payment.snap_token = checkout.token
    payment.snap_redirect_url = checkout.redirect_url
    payment.status_detail = None
    db.session.commit()
    log.info(
        "payment created",
        extra={"payment_id": str(payment.id), "order_id": payment.order_id, "attempt": attempt},
    )
    return payment


def _counted_attempt(order_id: str, *, lock: bool) -> Payment | None:
    query = sa.select(Payment).where(
        Payment.order_id == order_id, Payment.status.in_(sorted(OPEN | PAID))
    )
    if lock:
        query = query.with_for_update()
    return db.session.scalar(query)


def _reuse_or_end(existing: Payment, new: NewPayment, now: datetime) -> Payment | None:
    """Return the attempt a retry should get, or end it so that a new attempt can start."""
    if existing.status in PAID:
        raise PaymentConflict(
            f"order {new.order_id} is already paid",
            [{"field": "order_id", "message": f"payment {existing.id} is {existing.status}"}],
        )
    if existing.amount != new.amount:
        raise PaymentConflict(
            f"order {new.order_id} has a live payment of {existing.amount}, not {new.amount}",
            [
                {
                    "field": "amount",
                    "message": "differs from the live payment",
                    "live": existing.amount,
                }
            ],
        )
    if existing.is_expired(now):
        existing.transition_to(PaymentStatus.EXPIRED, source="api", detail="expired_before_retry")
    elif existing.snap_token:
        return existing
    elif now - existing.created_at < CREATE_IN_FLIGHT:
        raise PaymentConflict(
            "a payment for this order is being created; retry shortly",
            [{"field": "order_id", "message": "creation in progress"}],
        )
    else:
        existing.transition_to(PaymentStatus.FAILED, source="api", detail="create_abandoned")
    db.session.commit()
    return None


def _failure_detail(exc: GatewayError) -> str:
    if isinstance(exc, GatewayTimeout):
        return "gateway_timeout"
    if isinstance(exc, GatewayAuthError):
        return "gateway_auth_failed"
    if isinstance(exc, GatewayRejected):
        return "gateway_rejected"
    return "gateway_unavailable"


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
    inbox = Notification(
        raw_body=raw.decode("utf-8", errors="replace"), received_at=now or utcnow()
    )
    db.session.add(inbox)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        return _close(inbox, NotificationOutcome.MALFORMED, "body is not a JSON object")
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
    target = from_midtrans(notification.transaction_status, notification.fraud_status)
    if confirm_paid and target is not None and target.status is PaymentStatus.SUCCESS:
        # Midtrans's own recommendation: the status API is the truth before money is booked.
        notification = gateway.parse_notification(gateway.get_status(notification.order_id).raw)
        target = from_midtrans(notification.transaction_status, notification.fraud_status)
    if target is None:
        detail = f"unknown transaction_status {notification.transaction_status!r}"
        return _close(inbox, NotificationOutcome.UNSUPPORTED, detail)
    outcome, detail = _apply(payment, target, notification, inbox)
    if outcome is not NotificationOutcome.STALE:
        payment.payment_details = {**payment.payment_details, **notification.details}
        payment.payment_type = notification.payment_type or payment.payment_type
        payment.gateway_transaction_id = (
            notification.transaction_id or payment.gateway_transaction_id
        )
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


def _apply(
    payment: Payment,
    target: GatewayOutcome,
    notification: GatewayNotification,
    inbox: Notification,
) -> tuple[NotificationOutcome, str | None]:
    """Decide and make the change one notification asks for; the status table has the last word."""
    record = {"source": "webhook", "notification": inbox}
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
        counted = _counted_attempt(payment.order_id, lock=False)
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
    _announce(payment, notification)
    return NotificationOutcome.APPLIED, target.detail


def _book_refund(payment: Payment, notification: GatewayNotification) -> None:
    if payment.status is PaymentStatus.REFUNDED and notification.refund_amount is None:
        payment.refunded_amount = payment.amount
    elif notification.refund_amount is not None:
        payment.refunded_amount = min(payment.amount, int(notification.refund_amount))


def _announce(payment: Payment, notification: GatewayNotification) -> None:
    """Queue a message for other services in the same transaction as the change."""
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
                "payment_type": notification.payment_type,
                "gateway_transaction_id": notification.transaction_id,
                "paid_at": payment.paid_at.isoformat() if payment.paid_at else None,
                "occurred_at": utcnow().isoformat(),
            },
        )
    )


def _seen_before(inbox: Notification) -> bool:
    return (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Notification)
            .where(
                Notification.dedupe_key == inbox.dedupe_key,
                Notification.id != inbox.id,
                Notification.outcome.in_([o.value for o in _SETTLED_OUTCOMES]),
            )
        )
        > 0
    )


def _close(inbox: Notification, outcome: NotificationOutcome, detail: str | None) -> Notification:
    inbox.outcome = outcome
    inbox.detail = detail[:255] if detail else None
    db.session.commit()
    return inbox


def _clip(value: object, length: int) -> str | None:
    return value[:length] if isinstance(value, str) else None
