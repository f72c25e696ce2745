"""What each baseline endpoint does, whatever the framework: the statements, in order.

Each function takes a `Database` (one connection or session, in a transaction) and returns
(HTTP status, JSON body). Midtrans is called over HTTP with Basic auth, as midtransclient does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import requests

from benchmarks.baselines import statements as q

Answer = tuple[int, dict[str, Any]]

WIB = timezone(timedelta(hours=7))
# The service's Snap codes per payment method (tiketq.gateway.midtrans.ENABLED_PAYMENTS).
ENABLED_PAYMENTS = {
    "credit_card": ["credit_card"],
    "bank_transfer": ["bca_va", "bni_va", "bri_va", "echannel", "permata_va"],
    "e_wallet": ["gopay", "shopeepay", "ovo", "dana"],
    "qris": ["other_qris"],
    "retail": ["indomaret", "alfamart"],
}
# Only what the benchmark's status answers say; anything else is recorded as unsupported.
TARGET_STATUS = {"pending": "pending", "settlement": "success", "capture": "success"}
MIDTRANS_TIMEOUT = (3.05, 10.0)
# The transaction statuses each signed status_code goes with (tiketq.gateway.midtrans).
STATUS_CODES = {
    "200": {
        "capture",
        "settlement",
        "authorize",
        "refund",
        "partial_refund",
        "chargeback",
        "partial_chargeback",
    },
    "201": {"pending", "capture"},
    "202": {"deny", "cancel", "expire", "failure"},
}

_http = threading.local()


class Database(Protocol):
    """One connection (or session) in a transaction."""

    def row(self, statement: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """Run a statement from `statements`; its first row as a dict, if it returns rows."""

    def commit(self) -> None:
        """Commit the transaction."""

    def rollback(self) -> None:
        """Roll the transaction back."""


def setting(name: str) -> str:
    """An environment variable the service reads too."""
    return os.environ[name]


def refresh_seconds() -> int:
    """STATUS_REFRESH_SECONDS, with the service's default."""
    return int(os.environ.get("STATUS_REFRESH_SECONDS", "5"))


def create(db: Database, body: dict[str, Any]) -> Answer:
    """POST /payments: store the attempt and its first event, ask Snap, store the token."""
    order_id, amount = body.get("order_id"), body.get("amount")
    if not isinstance(order_id, str) or not isinstance(amount, int | float) or amount <= 0:
        return 400, {"detail": "order_id and a positive amount are required"}
    live = db.row(q.LIVE_ATTEMPT, {"order_id": order_id})
    if live is not None:
        db.commit()
        return 201, payment_json(live)
    payment_id = _insert_payment(db, body, order_id, int(amount))
    if payment_id is None:
        db.rollback()
        return 409, {"detail": "a payment for this order is being created; retry shortly"}
    try:
        snap = _snap_create(order_id, int(amount), body)
    except requests.RequestException as exc:
        db.row(q.CREATE_FAILED, {"id": payment_id, "detail": "gateway_unavailable"})
        db.commit()
        return 503, {"detail": f"Midtrans is unavailable: {type(exc).__name__}"}
    stored = db.row(
        q.STORE_TOKEN,
        {"id": payment_id, "token": snap["token"], "redirect_url": snap["redirect_url"]},
    )
    db.commit()
    return 201, payment_json(stored)


def _insert_payment(db: Database, body: dict[str, Any], order_id: str, amount: int) -> str | None:
    """Insert the attempt and its "creating" event and commit; None if the order has one."""
    row = db.row(
        q.INSERT_PAYMENT,
        {
            "id": str(uuid.uuid4()),
            "order_id": order_id,
            "amount": amount,
            "payment_method": body.get("payment_method"),
            "description": body.get("description"),
            "customer": json.dumps(body.get("customer_details") or {}),
            "items": json.dumps(body.get("item_details") or []),
            "expiry_hours": int(body.get("expiry_duration") or 1),
            "fingerprint": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(),
        },
    )
    if row is None:
        return None
    _event(db, str(row["id"]), None, "pending", detail="creating", source="api")
    db.commit()
    return str(row["id"])


def _event(
    db: Database,
    payment_id: str,
    from_status: str | None,
    to_status: str,
    *,
    source: str,
    detail: str | None = None,
    notification_id: int | None = None,
) -> None:
    """Record one status change of a payment."""
    db.row(
        q.INSERT_EVENT,
        {
            "payment_id": payment_id,
            "from_status": from_status,
            "to_status": to_status,
            "status_detail": detail,
            "source": source,
            "notification_id": notification_id,
        },
    )


def read(db: Database, payment_id: str) -> Answer:
    """GET /payments/<id>: the payment."""
    payment = _payment(db, payment_id)
    db.commit()
    if payment is None:
        return 404, {"detail": "Payment not found"}
    return 200, payment_json(payment)


def status(db: Database, payment_id: str) -> Answer:
    """GET /payments/<id>/status: ask Midtrans first if open and not checked lately.

    An answer with a state is applied as a notification's is (the service's refresh does so too).
    """
    payment = _payment(db, payment_id)
    if payment is None:
        db.rollback()
        return 404, {"detail": "Payment not found"}
    stale = db.row(q.STALE_FOR_REFRESH, {"id": payment_id, "seconds": refresh_seconds()})
    if stale is not None:
        # A Snap session the traveller has not paid from yet is a "404" inside a 200: no state to
        # apply. The check is recorded either way.
        answer = _core_status(stale["gateway_order_id"])
        _apply(db, stale["gateway_order_id"], answer, None, source="reconcile")
        db.row(q.CHECKED, {"id": payment_id})
        payment = _payment(db, payment_id)
    db.commit()
    return 200, {
        "payment_id": str(payment["id"]),
        "order_id": payment["order_id"],
        "status": payment["status"],
        "current_status": payment["status"],
        "status_detail": payment["status_detail"],
        "amount": payment["amount"],
        "payment_method": payment["payment_method"],
        "last_updated": payment["updated_at"].isoformat(),
        "auto_updated": stale is not None,
    }


def webhook(db: Database, raw: bytes) -> Answer:
    """POST /payments/webhook, all of it synchronously, in one transaction.

    Verify the signature and the status code's fit, insert the inbox row, ask Midtrans's status
    API about the order, lock the payment, bring it in line with the answer (update, event,
    outbox), close the inbox row, commit. The notification's own claims decide nothing.
    """
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return 400, {"outcome": "malformed"}
    signed = _signed(body)
    fits = signed and str(body.get("transaction_status")) in STATUS_CODES.get(
        body["status_code"], ()
    )
    outcome = "received" if fits else "bad_signature" if not signed else "status_mismatch"
    inbox = db.row(
        q.INSERT_NOTIFICATION,
        {
            "raw_body": raw.decode("utf-8", errors="replace"),
            "order_id": _text(body.get("order_id")),
            "transaction_status": _text(body.get("transaction_status")),
            "status_code": _text(body.get("status_code")),
            "gross_amount": _text(body.get("gross_amount")),
            "signature_ok": signed,
            "dedupe_key": hashlib.sha256(raw).hexdigest(),
            "outcome": outcome,
        },
    )
    if not fits:
        db.commit()
        return 403, {"outcome": outcome, "notification_id": inbox["id"]}
    try:
        answer = _core_status(body["order_id"])
    except requests.RequestException as exc:
        # Nothing stored: Midtrans sends the notification again.
        db.rollback()
        return 503, {"detail": f"Midtrans is unavailable: {type(exc).__name__}"}
    outcome, payment_id = _apply(db, body["order_id"], answer, inbox["id"])
    db.row(q.CLOSE_NOTIFICATION, {"id": inbox["id"], "outcome": outcome, "payment_id": payment_id})
    db.commit()
    return 200, {"outcome": outcome, "notification_id": inbox["id"]}


def _apply(
    db: Database,
    order_id: str,
    answer: dict[str, Any],
    inbox_id: int | None,
    *,
    source: str = "webhook",
) -> tuple[str, str | None]:
    """Bring the locked payment in line with Midtrans's answer; (outcome, payment id)."""
    if answer.get("status_code") == "404":
        # Midtrans knows only a Snap session (or nothing): no state to apply.
        return "failed", None
    if answer.get("order_id") != order_id or not _signed(answer):
        return "failed", None
    payment = db.row(q.LOCK_BY_GATEWAY_ORDER, {"order_id": order_id})
    if payment is None:
        return "unknown_order", None
    payment_id = str(payment["id"])
    details = {
        "id": payment_id,
        "payment_type": _text(answer.get("payment_type")),
        "transaction_id": _text(answer.get("transaction_id")),
    }
    target = TARGET_STATUS.get(str(answer.get("transaction_status")))
    if target is None:
        return "unsupported", payment_id
    if _amount(answer.get("gross_amount")) != payment["amount"]:
        return "amount_mismatch", payment_id
    if target == payment["status"] or payment["status"] != "pending":
        db.row(q.ANSWERED, details)
        return ("duplicate" if target == payment["status"] else "stale"), payment_id
    db.row(q.APPLY_STATUS, {**details, "status": target})
    _event(db, payment_id, payment["status"], target, source=source, notification_id=inbox_id)
    if target == "success":
        _announce(db, payment, "payment.succeeded")
    return "applied", payment_id


def _announce(db: Database, payment: dict[str, Any], event_type: str) -> None:
    """Queue the outbox message other services hear about, in this transaction."""
    payload = {
        "event_type": event_type,
        "payment_id": str(payment["id"]),
        "order_id": payment["order_id"],
        "amount": payment["amount"],
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    db.row(
        q.INSERT_OUTBOX,
        {
            "event_id": str(uuid.uuid4()),
            "payment_id": str(payment["id"]),
            "event_type": event_type,
            "payload": json.dumps(payload),
        },
    )


def _payment(db: Database, payment_id: str) -> dict[str, Any] | None:
    try:
        uuid.UUID(payment_id)
    except ValueError:
        return None
    return db.row(q.PAYMENT, {"id": payment_id})


def payment_json(row: dict[str, Any]) -> dict[str, Any]:
    """A payments row as the JSON API shows it: ids and times as strings."""
    out = {k: _plain(v) for k, v in row.items() if k not in ("request_fingerprint", "customer")}
    out["transaction_id"] = row["order_id"]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _session() -> requests.Session:
    """This thread's keep-alive session to Midtrans."""
    if not hasattr(_http, "session"):
        _http.session = requests.Session()
    return _http.session


def _midtrans(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One Midtrans call with the server key as Basic auth user, as midtransclient sends it."""
    response = _session().request(
        method,
        setting("MIDTRANS_BASE_URL").rstrip("/") + path,
        auth=(setting("MIDTRANS_SERVER_KEY"), ""),
        data=json.dumps(body) if body is not None else None,
        headers={"content-type": "application/json", "accept": "application/json"},
        timeout=MIDTRANS_TIMEOUT,
        allow_redirects=False,
    )
    response.raise_for_status()
    return response.json()


def _snap_create(order_id: str, amount: int, body: dict[str, Any]) -> dict[str, Any]:
    """Snap POST /snap/v1/transactions with the body the service sends."""
    minutes = int(body.get("expiry_duration") or 1) * 60
    snap: dict[str, Any] = {
        "transaction_details": {"order_id": order_id, "gross_amount": amount},
        "credit_card": {"secure": True},
        "expiry": {
            "start_time": datetime.now(WIB).strftime("%Y-%m-%d %H:%M:%S %z"),
            "unit": "minute",
            "duration": minutes,
        },
        "page_expiry": {"unit": "minute", "duration": minutes},
    }
    if body.get("item_details"):
        snap["item_details"] = body["item_details"]
    if body.get("customer_details"):
        snap["customer_details"] = body["customer_details"]
    if body.get("payment_method") in ENABLED_PAYMENTS:
        snap["enabled_payments"] = ENABLED_PAYMENTS[body["payment_method"]]
    return _midtrans("post", "/snap/v1/transactions", snap)


def _core_status(gateway_order_id: str) -> dict[str, Any]:
    """Core GET /v2/<order id>/status."""
    return _midtrans("get", f"/v2/{gateway_order_id}/status")


def _signed(body: dict[str, Any]) -> bool:
    """Midtrans's signature_key: SHA-512 of order_id + status_code + gross_amount + server key."""
    fields = [body.get(name) for name in ("order_id", "status_code", "gross_amount")]
    given = body.get("signature_key")
    if not all(isinstance(value, str) for value in [*fields, given]) or not given.isascii():
        return False
    expected = hashlib.sha512(("".join(fields) + setting("MIDTRANS_SERVER_KEY")).encode())
    return hmac.compare_digest(expected.hexdigest(), given)


def _amount(value: object) -> Decimal | None:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
