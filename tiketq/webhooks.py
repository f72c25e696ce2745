"""Blueprint: the Midtrans notification URL."""

from __future__ import annotations

import json
import re

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
# PostgreSQL text refuses NUL, and UTF-8 cannot encode a lone UTF-16 surrogate.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(raw: bytes) -> bool:
    """Tell whether the inbox can keep this body and every text read from it."""
    if b"\x00" in raw:
        return False
    try:
        pending = [json.loads(raw)]
    except (ValueError, RecursionError):
        return True  # kept with undecodable bytes replaced, and answered as malformed
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend([*value, *value.values()])
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and _UNSTORABLE.search(value):
            return False
    return True


@bp.post("/payments/webhook")
@bp.post("/webhook/midtrans")
def midtrans_notification() -> tuple[Response, int]:
    """Store a Midtrans notification, apply it, and tell Midtrans whether to send it again."""
    raw = request.get_data(cache=False)
    if not _storable(raw):
        # Storing it would fail with a 500 that Midtrans retries; no real notification has these.
        WEBHOOK_OUTCOMES.labels(NotificationOutcome.MALFORMED.value).inc()
        return json_error(400, "the body has a NUL or a lone surrogate; it cannot be stored"), 400
    inbox = notifications.receive_notification(
        raw,
        gateway=current_gateway(),
        confirm_paid=current_app.config["MIDTRANS_CONFIRM_PAID"],
    )
    outcome = NotificationOutcome(inbox.outcome)
    WEBHOOK_OUTCOMES.labels(outcome.value).inc()
    return jsonify(outcome=outcome.value, notification_id=inbox.id), _STATUS.get(outcome, 200)


@bp.errorhandler(GatewayError)
def _confirmation_failed(exc: GatewayError) -> Response:
    # The notification is stored; Midtrans will resend it once the status API answers again.
    response = json_error(503, "could not confirm the payment with Midtrans; send again later")
    response.headers["Retry-After"] = "60"
    return response
