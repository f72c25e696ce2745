"""Sending outbox messages to other TiketQ services: who gets what, signed how."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import requests
from flask import Flask, current_app
from jwt.warnings import InsecureKeyLengthWarning

EXTENSION_KEY = "tiketq.outbound"
TRANSACTION_SERVICE = "transaction_service"
# The transaction service marks an order paid whatever it is told, so it only hears of successes.
CONFIRMED_EVENTS = frozenset({"payment.succeeded"})
TOKEN_LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True)
class Destination:
    """A named receiver of outbox messages."""

    name: str
    url: str


@dataclass(frozen=True)
class Sent:
    """How one delivery attempt went."""

    ok: bool
    status_code: int | None = None
    error: str | None = None


class Outbound:
    """Delivers outbox messages: confirmations to the transaction service, events to others."""

    def __init__(
        self,
        *,
        transaction_service_url: str | None,
        jwt_secret: str,
        subscriber_urls: list[str],
        signing_secret: str,
        timeout: tuple[float, float],
    ) -> None:
        self._transaction_service_url = (transaction_service_url or "").rstrip("/") or None
        self._jwt_secret = jwt_secret
        self._subscribers = [
            Destination("subscriber:" + hashlib.sha256(url.encode()).hexdigest()[:12], url)
            for url in subscriber_urls
        ]
        self._signing_secret = signing_secret.encode()
        self._timeout = timeout
        self._http = requests.Session()

    def destinations(self, event_type: str, order_id: str) -> list[Destination]:
        """Who must receive a message of this type."""
        found = list(self._subscribers)
        if self._transaction_service_url and event_type in CONFIRMED_EVENTS:
            url = f"{self._transaction_service_url}/transactions/payments/{order_id}/confirm"
            found.insert(0, Destination(TRANSACTION_SERVICE, url))
        return found

    def send(
        self, destination: str, url: str, event_id: uuid.UUID, payload: dict[str, Any]
    ) -> Sent:
        """Make one attempt; any 2xx is delivered, everything else is worth another try."""
        if destination == TRANSACTION_SERVICE:
            body = self._confirmation(event_id, payload)
            headers = {"Content-Type": "application/json"}
        else:
            body = json.dumps({"event_id": str(event_id), **payload}, separators=(",", ":"))
            headers = self._signed_headers(event_id, body)
        try:
            response = self._http.post(
                url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            return Sent(ok=False, error=type(exc).__name__)
        ok = 200 <= response.status_code < 300
        return Sent(ok=ok, status_code=response.status_code, error=None if ok else response.reason)

    def _confirmation(self, event_id: uuid.UUID, payload: dict[str, Any]) -> str:
        # The transaction service's contract: claim "token" must be "success"; it ignores the rest,
        # which bind this token to one order and a few minutes.
        now = datetime.now(UTC)
        claims = {
            "token": "success",
            "order_id": payload["order_id"],
            "jti": str(event_id),
            "iat": now,
            "exp": now + TOKEN_LIFETIME,
        }
        with warnings.catch_warnings():
            # The secret is the transaction service's; its length is not ours to choose.
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            token = jwt.encode(claims, self._jwt_secret, algorithm="HS256")
        gateway_response = {
            "success": True,
            "order_id": payload["order_id"],
            "payment_id": payload["payment_id"],
            "transaction_id": payload.get("gateway_transaction_id"),
            "transaction_status": payload["status"],
            "amount": payload["amount"],
            "currency": payload["currency"],
            "payment_type": payload.get("payment_type"),
            "paid_at": payload.get("paid_at"),
        }
        return json.dumps({"gateway_response": gateway_response, "token": token})

    def _signed_headers(self, event_id: uuid.UUID, body: str) -> dict[str, str]:
        timestamp = str(int(time.time()))
        digest = hmac.new(self._signing_secret, f"{timestamp}.{body}".encode(), hashlib.sha256)
        return {
            "Content-Type": "application/json",
            "X-TiketQ-Event-Id": str(event_id),
            "X-TiketQ-Timestamp": timestamp,
            "X-TiketQ-Signature": "v1=" + digest.hexdigest(),
        }


def init_app(app: Flask) -> None:
    """Create the outbound sender from config."""
    config = app.config
    app.extensions[EXTENSION_KEY] = Outbound(
        transaction_service_url=config["TRANSACTION_SERVICE_URL"],
        jwt_secret=config["JWT_SECRET"],
        subscriber_urls=config["EVENT_SUBSCRIBER_URLS"],
        signing_secret=config["EVENT_SIGNING_SECRET"] or "",
        timeout=(config["OUTBOUND_CONNECT_TIMEOUT"], config["OUTBOUND_READ_TIMEOUT"]),
    )


def current_outbound() -> Outbound:
    """The outbound sender of the current app."""
    outbound: Outbound = current_app.extensions[EXTENSION_KEY]
    return outbound
