"""Midtrans wire conventions: amounts, timestamps, signatures and canned error bodies."""

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from flask import Response

# Midtrans reports every time in Western Indonesian Time, which has no DST.
JAKARTA = timezone(timedelta(hours=7), "WIB")

INTERNAL_ERROR_MESSAGE = "Sorry, we encountered internal server error. We will fix this soon."
SNAP_UNAUTHORIZED = [
    "Access denied due to unauthorized transaction, please check client or server key",
    "Visit https://snap-docs.midtrans.com/#request-headers for more details",
]
CANNOT_MODIFY = {
    "status_code": "412",
    "status_message": "Merchant cannot modify the status of the transaction",
}
INVALID_REFUND_AMOUNT = {
    "status_code": "414",
    "status_message": "Refund request is rejected due to invalid amount",
}


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def midtrans_time(moment: datetime) -> str:
    """Format a moment as Midtrans does in bodies: 'YYYY-MM-DD HH:MM:SS' in GMT+7."""
    return moment.astimezone(JAKARTA).strftime("%Y-%m-%d %H:%M:%S")


def iso_utc_millis(moment: datetime) -> str:
    """Format a moment as ISO-8601 UTC with milliseconds, e.g. '2025-06-03T13:09:39.776Z'."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def money(amount: int) -> str:
    """Render an integer IDR amount the way Midtrans sends it, e.g. 10000 -> '10000.00'."""
    return f"{amount}.00"


def signature_key(order_id: str, status_code: str, gross_amount: str, server_key: str) -> str:
    """Compute Midtrans's signature: hex SHA-512 of order_id+status_code+gross_amount+server_key."""
    payload = order_id + status_code + gross_amount + server_key
    return hashlib.sha512(payload.encode("utf-8")).hexdigest()


def json_response(body: Any, status: int = 200) -> Response:
    """Serialise a body without re-ordering keys, whatever JSON settings the host app has."""
    return Response(json.dumps(body), status=status, mimetype="application/json")


def control_error(message: str, status: int) -> Response:
    """Answer a refused control API call with `{"error": message}`."""
    return json_response({"error": message}, status)


def snap_errors(messages: list[str], status: int = 400) -> Response:
    """Answer with Snap's error envelope `{"error_messages": [...]}`."""
    return json_response({"error_messages": messages}, status)


def core_not_found() -> Response:
    """Answer an unknown Core API id the way Midtrans does: HTTP 200 with 404 inside the body."""
    return json_response(
        {
            "status_code": "404",
            "status_message": "Transaction doesn't exist.",
            "id": str(uuid.uuid4()),
        }
    )


def core_unauthorized() -> Response:
    """Answer a Core API call made with a wrong server key."""
    return json_response(
        {
            "status_code": "401",
            "status_message": "Unknown Merchant server_key/id",
            "id": str(uuid.uuid4()),
        },
        401,
    )
