"""Blueprint: the Midtrans notification URL."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from tiketq.errors import json_error
from tiketq.gateway import GatewayError, current_gateway
from tiketq.metrics import WEBHOOK_OUTCOMES
from tiketq.payments import notifications
from tiketq.payments.models import NotificationOutcome

bp = Blueprint("webhooks", __name__)

# Midtrans retries anything but a 2xx, so only a handled notification gets one.
_STATUS = {
    NotificationOutcome.UNKNOWN_ORDER: 404,
    NotificationOutcome.BAD_SIGNATURE: 403,
    NotificationOutcome.MALFORMED: 400,
}


@bp.post("/payments/webhook")
@bp.post("/webhook/midtrans")
def midtrans_notification() -> tuple[Response, int]:
    """Store a Midtrans notification, apply it, and tell Midtrans whether to send it again."""
    receipt = notifications.receive_notification(
        request.get_data(cache=False),
        gateway=current_gateway(),
        confirm_paid=current_app.config["MIDTRANS_CONFIRM_PAID"],
    )
    WEBHOOK_OUTCOMES.labels(receipt.outcome.value).inc()
    body = {
        "outcome": receipt.outcome.value,
        "notification_id": receipt.notification_id,
        "detail": receipt.detail,
    }
    return jsonify(body), _STATUS.get(receipt.outcome, 200)


@bp.errorhandler(GatewayError)
def _confirmation_failed(exc: GatewayError) -> Response:
    # The notification is stored; Midtrans will resend it once the status API answers again.
    response = json_error(503, "could not confirm the payment with Midtrans; send again later")
    response.headers["Retry-After"] = "60"
    return response
