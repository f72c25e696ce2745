"""HTTP notifications sent the way Midtrans sends them, from a delivery thread in each process.

Every change `Simulator.record_change` makes to a Core API transaction's status, fraud status,
payment method or refunds queues a notification of the new state, in the same database
transaction: a POST of a JSON body shaped like Midtrans's, with the headers
`Content-Type: application/json`, `Accept: application/json` and `User-Agent: Veritrans`, signed
as SHA-512 of order_id + status_code + gross_amount + server key. A refund queues two, the second
adding `bank_confirmed_at` to the refund. `status_code` in a notification:

    201  pending; capture held with fraud_status challenge
    200  capture (fraud accept), authorize, settlement, refund, partial_refund, chargeback,
         partial_chargeback
    202  deny, cancel, expire, failure  (Get Status reports expire as 407 instead)

Destinations: the configured notification URL(s), or per transaction those of the Snap request
header X-Override-Notification (only these; it wins over the other header) or
X-Append-Notification (these plus the configured ones), comma separated, the first 3 used.
With no URL at all the notification is recorded with status `no_url` and never sent.

Retries, decided by the receiver's answer to the latest attempt (see `retries_allowed`):

    2xx                                      delivered, no retry
    500                                      1 retry
    503                                      4 retries
    400, 404                                 2 retries
    301, 302, 303                            not followed, no retry
    307, 308                                 same body re-POSTed to Location, up to 5 hops
    any other status, timeout, connection    5 retries

Retry n comes a random time of up to 2, 10, 30, 90 or 210 minutes (n = 1..5) after the previous
attempt. A request times out after 15 seconds. All these times are multiplied by `time_scale`,
but the timeout never drops below half a second, so that a healthy local receiver never times out.

Control API (notification_control.py): GET /control/notifications?order_id= lists deliveries;
POST|GET|DELETE /control/notifications/mode sets, shows or resets {duplicates, reverse, hold};
POST /control/notifications/release sends held ones; POST /control/notifications/drain
{timeout, order_id} waits for due deliveries; POST /control/transactions/<id>/notify replays.
"""

import json
import logging
import random
import sqlite3
import threading
import time
import weakref
from typing import Any
from urllib.parse import urlsplit

from .delivery import MAX_REDIRECTS, Attempt, post_notification
from .outbox import Delivery, Outbox, Status
from .store import Transaction

MAX_URLS_PER_HEADER = 3
TIMEOUT_SECONDS = 15.0
MIN_TIMEOUT_SECONDS = 0.5
RETRY_DELAYS_SECONDS = (120, 600, 1800, 5400, 12600)
_RETRIES_BY_CODE = {500: 1, 503: 4, 400: 2, 404: 2, 301: 0, 302: 0, 303: 0}
_RETRIES_OTHERWISE = 5
# How soon a delivery queued by another process is noticed when nothing is due sooner.
_POLL_SECONDS = 1.0
_DRAIN_POLL_SECONDS = 0.01
# Covers a whole attempt with its redirects; after it, a crashed process's claim is retried.
_LEASE_MARGIN_SECONDS = 30.0

_log = logging.getLogger(__name__)


def configured_urls(value: str | None) -> list[str]:
    """Parse the configured notification URLs, comma separated; each must be http(s)."""
    urls = _split_urls(value)
    for url in urls:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"notification URL must be http or https: {url}")
    return urls


def header_urls(value: str | None) -> list[str]:
    """Parse an X-Override-Notification / X-Append-Notification header, keeping at most 3 URLs."""
    return _split_urls(value)[:MAX_URLS_PER_HEADER]


def retries_allowed(attempt: Attempt) -> int:
    """Return how many retries Midtrans grants after an attempt that ended like `attempt`."""
    if attempt.delivered:
        return 0
    if attempt.response_code is None:
        return _RETRIES_OTHERWISE
    return _RETRIES_BY_CODE.get(attempt.response_code, _RETRIES_OTHERWISE)


class Notifier:
    """Queues notifications in the outbox and delivers them from one daemon thread per process."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        urls: list[str],
        time_scale: float,
        timeout: float | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive")
        self.outbox = outbox
        self.urls = urls
        self.time_scale = time_scale
        # Load drills scale the retries down but keep Midtrans's own patience for an answer.
        self.timeout = timeout or max(TIMEOUT_SECONDS * time_scale, MIN_TIMEOUT_SECONDS)
        self._lease = self.timeout * (MAX_REDIRECTS + 1) + _LEASE_MARGIN_SECONDS
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def destinations(self, txn: Transaction) -> list[str]:
        """Return where notifications about `txn` go."""
        if txn.override_notification_urls:
            return list(txn.override_notification_urls)
        return list(dict.fromkeys([*self.urls, *txn.append_notification_urls]))

    def enqueue(
        self, conn: sqlite3.Connection, txn: Transaction, bodies: list[dict[str, Any]]
    ) -> list[Delivery]:
        """Queue `bodies` about `txn` within the caller's write transaction."""
        urls = self.destinations(txn)
        now = time.time()
        return [
            delivery
            for body in bodies
            for delivery in self.outbox.add(conn, txn.order_id, urls, json.dumps(body), now=now)
        ]

    def start(self) -> None:
        """Make sure this process runs a delivery thread; a forked worker starts its own."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            # A fresh event, as one inherited through fork may be in any state.
            self._wake = threading.Event()
            self._thread = threading.Thread(
                target=_deliver_forever,
                args=(weakref.ref(self), self._wake),
                name="midtrans-simulator-notifier",
                daemon=True,
            )
            self._thread.start()

    def wake(self) -> None:
        """Have this process's delivery thread look for due deliveries now."""
        self.start()
        self._wake.set()

    def deliver_next(self) -> bool:
        """Make the next due attempt, if any; return whether one was made."""
        claim = self.outbox.claim(now=time.time(), lease=self._lease)
        if claim is None:
            return False
        attempt = post_notification(claim.url, claim.body, timeout=self.timeout)
        made = claim.attempts_made + 1
        status: Status = "gave_up"
        retry_at = None
        if attempt.delivered:
            status = "delivered"
        elif made <= retries_allowed(attempt):
            status = "pending"
            retry_at = time.time() + self._retry_delay(made)
        self.outbox.finish(claim, attempt, status=status, next_attempt_at=retry_at)
        return True

    def seconds_until_due(self) -> float:
        """Return how long the delivery thread may sleep before something falls due."""
        due = self.outbox.next_due()
        if due is None:
            return _POLL_SECONDS
        return min(max(due - time.time(), 0.0), _POLL_SECONDS)

    def drain(self, *, timeout: float, order_id: str | None = None) -> bool:
        """Wait until no pending delivery falls due within `timeout` seconds; False if one does."""
        deadline = time.time() + timeout
        self.wake()
        while self.outbox.busy(due_before=deadline, order_id=order_id):
            if time.time() >= deadline:
                return False
            time.sleep(_DRAIN_POLL_SECONDS)
        return True

    def _retry_delay(self, retry: int) -> float:
        return random.uniform(0, RETRY_DELAYS_SECONDS[retry - 1]) * self.time_scale


def _deliver_forever(ref: "weakref.ref[Notifier]", wake: threading.Event) -> None:
    # Only a weak reference is kept between rounds, so a discarded simulator's thread ends.
    while (notifier := ref()) is not None:
        wake.clear()
        try:
            while notifier.deliver_next():
                pass
            pause = notifier.seconds_until_due()
        except Exception:
            _log.exception("Midtrans simulator could not deliver notifications; will retry")
            pause = _POLL_SECONDS
        del notifier
        wake.wait(pause)


def _split_urls(value: str | None) -> list[str]:
    return [url.strip() for url in (value or "").split(",") if url.strip()]
