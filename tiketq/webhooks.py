"""Blueprint: the Midtrans notification URL (verify, store, acknowledge; the worker applies)."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel

from tiketq.gateway import current_gateway
from tiketq.metrics import WEBHOOK_OUTCOMES
from tiketq.openapi import Alias, Operation
from tiketq.payments import notifications
from tiketq.payments.status import NotificationOutcome
from tiketq.schemas import ErrorOut

bp = Blueprint("webhooks", __name__)

# Midtrans retries anything but a 2xx: a stored notification gets one, a refused one does not.
_STATUS = {
    NotificationOutcome.BAD_SIGNATURE: 403,
    NotificationOutcome.STATUS_MISMATCH: 403,
    NotificationOutcome.MALFORMED: 400,
}


class NotificationAck(BaseModel):
    """What the webhook tells Midtrans; any status but 200 makes Midtrans send it again."""

    outcome: Literal["accepted", "bad_signature", "status_mismatch", "malformed"]
    notification_id: int
    detail: str | None


@bp.post("/payments/webhook")
@bp.post("/webhook/midtrans")
@Operation(
    operation_id="receiveMidtransNotification",
    tag="webhooks",
    success=(200, NotificationAck, "Stored for the worker to apply; Midtrans stops sending it"),
    errors=(413, 503),
    refusals=(
        (
            400,
            {"anyOf": [NotificationAck, ErrorOut]},
            "Not a notification: not a JSON object, or text that cannot be stored",
        ),
        (
            403,
            NotificationAck,
            "The signature is missing or wrong, or the status_code cannot go with the "
            "transaction_status",
        ),
    ),
    # The signature covers the bytes Midtrans sent, so no model parses the body first.
    body={
        "type": "object",
        "description": "A Midtrans HTTP notification; its signature_key is checked first",
    },
    alias=Alias(
        "/webhook/midtrans",
        "receiveMidtransNotificationLegacy",
        "at the URL of the replaced service",
    ),
)
def midtrans_notification() -> tuple[Response, int]:
    """Midtrans's notification URL: verify a notification and store it for the worker."""
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
