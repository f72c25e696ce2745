"""Worker kill drill: workers are SIGKILLed while they deliver the outbox; nothing may be lost.

Many payments are paid (a settlement notification each), so the outbox holds one
`payment.succeeded` per payment: a confirmation to the transaction service and an event to the
subscriber. Two workers deliver them to a receiver that holds every request for a while; the drill
kills a worker that has a delivery claimed, starts another, and repeats. Then it waits until the
outbox is delivered and checks that the receiver saw every event and confirmation at least once,
with at most one repeat per kill (the delivery in flight).

    .venv/bin/python -m drills.worker_kill [--payments 120] [--kills 4] [--receiver-delay 0.25] ...
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from benchmarks.common import SetupError
from drills.cli import run_drill
from drills.harness import JWT_SECRET, Stack, call, new_payment, stack, wait_until
from drills.report import Check, Result, Row

# A worker session idle inside a transaction that holds a delivery row lock (FOR UPDATE takes
# RowShareLock on the table) has claimed a delivery and is out sending it.
MID_DELIVERY = """
SELECT DISTINCT a.application_name FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
WHERE l.relation = 'deliveries'::regclass AND l.mode = 'RowShareLock'
  AND a.state = 'idle in transaction' AND a.application_name LIKE 'drill-worker-%'
"""
DELIVERIES = "SELECT status, count(*) FROM deliveries GROUP BY status"


@dataclass(frozen=True)
class Options:
    """How much to deliver and how often to kill."""

    payments: int = 120
    workers: int = 2
    kills: int = 4
    receiver_delay: float = 0.25
    timeout: float = 300.0
    keep: bool = False


@dataclass
class Workers:
    """The drill's worker processes by name (their PostgreSQL application_name)."""

    stack: Stack
    live: dict[str, subprocess.Popen] = field(default_factory=dict)
    started: int = 0

    def start(self) -> None:
        """One more worker, named so that its database session can be told apart."""
        name = f"drill-worker-{self.started}"
        self.started += 1
        self.live[name] = self.stack.start_worker(PGAPPNAME=name)

    def kill(self, name: str) -> None:
        """SIGKILL: no signal handler runs, the round in progress is simply gone."""
        worker = self.live.pop(name)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)


def _pay(s: Stack, order_id: str) -> None:
    status, body = call(
        "POST", f"{s.service_url}/payments", new_payment(order_id, 250_000, "bank_transfer")
    )
    if status != 201:
        raise SetupError(f"create {order_id}: {status} {body}")
    s.simulator(
        "POST", f"/transactions/{order_id}/pay", {"method": "bca_va", "outcome": "settlement"}
    )


def wait_for(what: str, done: Callable[[], bool], timeout: float) -> None:
    """Poll done() until true, or raise SetupError at the deadline."""
    if not wait_until(done, timeout, interval=0.2):
        raise SetupError(f"{what} did not happen within {timeout:.0f} s")


def fill(s: Stack, options: Options) -> list[str]:
    """Create and pay the payments; wait until each is success with its outbox message."""
    orders = [f"WK-{n:05d}" for n in range(options.payments)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda order_id: _pay(s, order_id), orders))

    def filled() -> bool:
        query = "SELECT count(*) FROM outbox WHERE event_type = 'payment.succeeded'"
        return s.query(query)[0][0] == len(orders)

    wait_for("every payment's payment.succeeded", filled, options.timeout)
    return orders


def _delivery_counts(s: Stack) -> Counter:
    return Counter(dict(s.query(DELIVERIES)))


def _mid_delivery(s: Stack) -> list[str]:
    return [name for (name,) in s.query(MID_DELIVERY)]


def kill_mid_delivery(s: Stack, workers: Workers, options: Options, total: int) -> list[Row]:
    """Spread the kills over the backlog; each one hits a worker with a delivery claimed."""
    timeline = []
    for k in range(1, options.kills + 1):
        threshold = total * k // (options.kills + 1)
        deadline = time.monotonic() + options.timeout
        victim = None
        while victim is None:
            if time.monotonic() > deadline:
                raise SetupError(f"kill {k}: no worker was mid-delivery within {options.timeout} s")
            if _delivery_counts(s)["delivered"] >= threshold:
                busy = set(_mid_delivery(s))
                # The longest-lived busy worker, so that the original ones die too.
                victim = next((name for name in workers.live if name in busy), None)
            if victim is None:
                time.sleep(0.05)
        workers.kill(victim)
        delivered = _delivery_counts(s)["delivered"]
        workers.start()
        timeline.append((f"kill {k}", f"{victim} at {delivered}/{total} delivered"))
    return timeline


def _jti(token: str) -> str:
    """The event id a confirmation carries, once its signature is checked."""
    with warnings.catch_warnings():
        # The harness's secret is short; the transaction service's default is too.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        # Not its expiry: a slow machine may check it after the token's five minutes.
        claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    return claims["jti"]


def _received(s: Stack) -> tuple[list[str], list[tuple[str, str]]]:
    """Event ids at /events, and (order id, token jti) of each confirmation, repeats included."""
    with s.receiver.lock:
        received = list(s.receiver.received)
    events = [r.headers.get("X-TiketQ-Event-Id", "") for r in received if r.path == "/events"]
    confirmations = []
    for r in received:
        if r.path.startswith("/transactions/"):
            confirmations.append((r.path.split("/")[-2], _jti(json.loads(r.body)["token"])))
    return events, confirmations


def _messages(s: Stack) -> dict[str, str]:
    """Each payment.succeeded's event id and its order id."""
    query = (
        "SELECT event_id::text, payload->>'order_id' FROM outbox"
        " WHERE event_type = 'payment.succeeded'"
    )
    return dict(s.query(query))


def receipt_checks(s: Stack, orders: list[str], kills: int) -> tuple[list[Check], list[Row]]:
    """Every event and confirmation arrived; repeats only for the deliveries a kill cut short."""
    messages = _messages(s)
    events, confirmations = _received(s)
    seen_events = set(events)
    expected_confirmations = set(messages.items())
    seen_confirmations = {(jti, order_id) for order_id, jti in confirmations}
    missing_events = set(messages) - seen_events
    missing_confirmations = expected_confirmations - seen_confirmations
    unknown = (seen_events - set(messages)) | (seen_confirmations - expected_confirmations)
    repeats = len(events) - len(seen_events) + len(confirmations) - len(seen_confirmations)
    checks = [
        Check(
            len(messages) == len(orders) and not missing_events,
            f"events: {len(messages) - len(missing_events)}/{len(orders)} payment.succeeded ids "
            "seen at /events",
        ),
        Check(
            not missing_confirmations,
            f"confirmations: {len(messages) - len(missing_confirmations)}/{len(orders)} orders "
            "confirmed at /transactions with a valid token whose jti is the event id",
        ),
        Check(not unknown, f"nothing else arrived: {len(unknown)} unknown ids"),
        Check(
            repeats <= kills,
            f"at least once: {repeats} repeated deliveries, at most one per kill ({kills})",
        ),
    ]
    duplicates = (
        f"{len(events) - len(seen_events)} events, "
        f"{len(confirmations) - len(seen_confirmations)} confirmations"
    )
    rows = [
        ("received", f"{len(events)} events, {len(confirmations)} confirmations"),
        ("duplicates", duplicates),
    ]
    return checks, rows


def run(options: Options) -> Result:
    """Fill the outbox, deliver it through killed workers, and check what the receiver saw."""
    with stack(workers=0, keep=options.keep) as s:
        orders = fill(s, options)
        total = 2 * len(orders)
        s.receiver.delay_seconds = options.receiver_delay
        workers = Workers(s)
        started = time.monotonic()
        for _ in range(options.workers):
            workers.start()
        rows = kill_mid_delivery(s, workers, options, total)

        def converged() -> bool:
            counts = _delivery_counts(s)
            return counts["delivered"] == total or counts["dead"] > 0

        wait_for("delivery of the whole outbox", converged, options.timeout)
        elapsed = time.monotonic() - started
        counts = _delivery_counts(s)
        checks = [
            Check(
                counts["delivered"] == total and sum(counts.values()) == total,
                f"outbox delivered: {counts['delivered']}/{total} deliveries delivered, "
                f"{counts['pending']} pending, {counts['dead']} dead",
            )
        ]
        received, received_rows = receipt_checks(s, orders, options.kills)
        checks += received
        checks.append(s.audit())
        delivery = (
            f"{elapsed:.1f} s with {options.workers} workers, the receiver holding each request "
            f"{options.receiver_delay} s"
        )
        rows = [
            ("payments", f"{len(orders)} success, {total} deliveries"),
            ("delivery", delivery),
            *rows,
            *received_rows,
        ]
        if options.keep:
            rows.append(("kept", str(s.root)))
    return Result("Worker kill drill", rows, checks)


HELP = {
    "payments": "payments paid, two deliveries each",
    "workers": "workers delivering at any time",
    "kills": "workers SIGKILLed mid-delivery, spread over the backlog",
    "receiver_delay": "seconds the receiver holds each request",
    "timeout": "seconds any one wait may take",
    "keep": "keep the drill's directory and logs",
}


def main(argv: list[str] | None = None) -> int:
    """Run the drill from the command line: exit 0, 1 (a check failed) or 2 (no stack)."""
    return run_drill("drills.worker_kill", __doc__ or "", Options, run, HELP, argv)


if __name__ == "__main__":
    sys.exit(main())
