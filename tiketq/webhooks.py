"""Blueprint: the Midtrans notification URL (verify, store, acknowledge; the worker applies)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from tiketq.gateway import current_gateway
from tiketq.metrics import WEBHOOK_OUTCOMES
from tiketq.payments import notifications
from tiketq.payments.status import NotificationOutcome

bp = Blueprint("webhooks", __name__)

# Midtrans retries anything but a 2xx: a stored notification gets one, a refused one does not.
_STATUS = {
    NotificationOutcome.BAD_SIGNATURE: 403,
    NotificationOutcome.STATUS_MISMATCH: 403,
    NotificationOutcome.MALFORMED: 400,
}


@bp.post("/payments/webhook")
@bp.post("/webhook/midtrans")
def midtrans_notification() -> tuple[Response, int]:
    """Store a Midtrans notification for the worker and tell Midtrans whether to send it again."""
    receipt = notifications.receive_notification(
        request.get_data(cache=False), gateway=current_gateway()
    )
    WEBHOOK_OUTCOMES.labels(receipt.outcome.value).inc()
    body = {
        "outcome": "accepted"
        if receipt.outcome is NotificationOutcome.RECEIVED
        else receipt.outcome.value,
        "notification_id": receipt.notification_id,
        "detail": receipt.detail,
    }
    return jsonify(body), _STATUS.get(receipt.outcome, 200)
