"""Worker kill drill: workers are SIGKILLed mid-apply and mid-delivery; nothing may be lost.

Many payments are paid (a settlement notification each); the workers apply the inbox, so the
outbox gets one `payment.succeeded` per payment: a confirmation to the transaction service and an
event to the subscriber.

First the status API answers `--status-delay` seconds late, so that a worker spends that long
inside an order's transaction, its inbox rows and payment row locked, waiting for Midtrans. The
drill SIGKILLs such a worker, starts another, and repeats: the dead worker's claim must end with
its transaction (PostgreSQL rolls it back when the connection drops), and another worker must
apply the same rows as if nothing had happened (attempts 1, one payment.succeeded per payment,
one confirmation per order).

Then a second batch is paid while the receiver holds every request for a while; the drill kills a
worker that has a delivery claimed, starts another, and repeats. At the end it waits until the
inbox and the outbox are done and checks that the receiver saw every event and confirmation at
least once, with at most one repeat per delivery kill (the delivery in flight).

    .venv/bin/python -m drills.worker_kill [--payments 120] [--kills 4] [--apply-kills 3] ...
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
from functools import partial

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
# A worker session idle inside a transaction that holds inbox rows and a payment row (FOR UPDATE)
# is waiting for Midtrans's status answer for that order; its rows carry its xid as xmax.
MID_APPLY = """
SELECT a.application_name, a.pid, a.backend_xid::text FROM pg_stat_activity a
WHERE a.state = 'idle in transaction' AND a.application_name LIKE 'drill-worker-%'
  AND a.backend_xid IS NOT NULL
  AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.mode = 'RowShareLock'
              AND l.relation = 'notifications'::regclass)
  AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.mode = 'RowShareLock'
              AND l.relation = 'payments'::regclass)
"""
CLAIMED_ROWS = "SELECT id FROM notifications WHERE xmax::text = %(xid)s ORDER BY id"
CLAIMED_ORDER = "SELECT gateway_order_id FROM payments WHERE xmax::text = %(xid)s"
# A dead worker's claim must end with its connection, not with some timeout much later.
RELEASED_WITHIN = 5.0
BACKEND_GONE = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %(pid)s"


@dataclass(frozen=True)
class Options:
    """How much to deliver and how often to kill."""

    payments: int = 120
    workers: int = 2
    kills: int = 4
    apply_kills: int = 3
    status_delay: float = 0.3
    receiver_delay: float = 0.25
    timeout: float = 300.0
    keep: bool = False


@dataclass(frozen=True)
class ApplyKill:
    """One worker killed mid-apply: its claim, and how long PostgreSQL kept it."""

    victim: str
    order_id: str
    rows: tuple[int, ...]
    released_after: float | None
    applied_before: int


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


def pay_all(s: Stack, orders: list[str]) -> None:
    """Create and pay the payments, four at a time."""
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda order_id: _pay(s, order_id), orders))


def _succeeded(s: Stack) -> int:
    query = "SELECT count(*) FROM outbox WHERE event_type = 'payment.succeeded'"
    return s.query(query)[0][0]


def fill(s: Stack, orders: list[str], options: Options, before: int = 0) -> None:
    """Create and pay the payments; wait until each is success with its outbox message."""
    pay_all(s, orders)
    wanted = before + len(orders)
    wait_for("every payment's payment.succeeded", lambda: _succeeded(s) == wanted, options.timeout)


def _backend_gone(s: Stack, pid: int) -> bool:
    return bool(s.query(BACKEND_GONE, {"pid": pid})[0][0])


def _mid_apply(s: Stack) -> list[tuple[str, int, str]]:
    return [(name, pid, xid) for name, pid, xid in s.query(MID_APPLY)]


def kill_mid_apply(
    s: Stack, workers: Workers, options: Options, orders: list[str]
) -> list[ApplyKill]:
    """Pay `orders` while the status API is slow; kill workers waiting for its answer."""
    kills: list[ApplyKill] = []
    with ThreadPoolExecutor(1) as payer:
        paying = payer.submit(pay_all, s, orders)
        for k in range(1, options.apply_kills + 1):
            threshold = len(orders) * k // (options.apply_kills + 1)
            deadline = time.monotonic() + options.timeout
            while True:
                if time.monotonic() > deadline:
                    raise SetupError(f"apply kill {k}: no worker was mid-apply in time")
                if paying.done():
                    paying.result()  # a failed create ends the drill here
                applied = _succeeded(s)
                if applied >= threshold:
                    busy = {name: (pid, xid) for name, pid, xid in _mid_apply(s)}
                    victim = next((name for name in workers.live if name in busy), None)
                    if victim is not None:
                        pid, xid = busy[victim]
                        rows = tuple(r for (r,) in s.query(CLAIMED_ROWS, {"xid": xid}))
                        claimed = s.query(CLAIMED_ORDER, {"xid": xid})
                        if rows and claimed:
                            break
                time.sleep(0.02)
            workers.kill(victim)
            killed = time.monotonic()
            # The dead worker's connection drops; PostgreSQL ends its transaction and its locks.
            gone = wait_until(partial(_backend_gone, s, pid), 30, interval=0.02)
            released = time.monotonic() - killed if gone else None
            kills.append(ApplyKill(victim, claimed[0][0], rows, released, applied))
            workers.start()
        paying.result()
    return kills


def apply_kill_checks(s: Stack, kills: list[ApplyKill], orders: list[str]) -> list[Check]:
    """The dead workers' claims ended with them; other workers applied the same rows once."""
    released = [k.released_after for k in kills]
    ids = [row for k in kills for row in k.rows]
    rows = s.query(
        "SELECT id, outcome, attempts, payment_id IS NOT NULL FROM notifications"
        " WHERE id = ANY(%(ids)s)",
        {"ids": ids},
    )
    clean = [r for r in rows if r[1] in ("applied", "duplicate") and r[2] == 1 and r[3]]
    twice = s.query(
        "SELECT count(*) FROM (SELECT payment_id, event_type FROM outbox"
        " GROUP BY payment_id, event_type HAVING count(*) > 1) AS repeated"
    )[0][0]
    states = dict(
        s.query(
            "SELECT status, count(*) FROM payments WHERE order_id = ANY(%(orders)s)"
            " GROUP BY status",
            {"orders": orders},
        )
    )
    _, confirmations = _received(s)
    per_order = Counter(order for order, _ in confirmations if order in set(orders))
    once = sum(per_order[order] == 1 for order in orders)
    shown = ", ".join("never" if t is None else f"{t:.2f} s" for t in released)
    return [
        Check(
            len(kills) > 0 and all(t is not None and t < RELEASED_WITHIN for t in released),
            f"mid-apply kills: {len(kills)} workers killed holding {len(ids)} inbox rows and "
            f"their payment; PostgreSQL released each claim {shown} after the SIGKILL",
        ),
        Check(
            len(clean) == len(ids) > 0,
            f"{len(clean)}/{len(ids)} rows the dead workers had claimed were applied by another "
            "worker with no trace of the dead attempt (attempts 1)",
        ),
        Check(
            states == {"success": len(orders)} and twice == 0,
            f"{states.get('success', 0)}/{len(orders)} payments paid during the kills are success; "
            f"{twice} (payment, event) pairs in the outbox more than once",
        ),
        Check(
            once == len(orders),
            f"{once}/{len(orders)} orders paid during the kills confirmed exactly once",
        ),
    ]


def _delivery_counts(s: Stack) -> Counter:
    return Counter(dict(s.query(DELIVERIES)))


def _mid_delivery(s: Stack) -> list[str]:
    return [name for (name,) in s.query(MID_DELIVERY)]


def kill_mid_delivery(
    s: Stack, workers: Workers, options: Options, total: int, base: int = 0
) -> list[Row]:
    """Spread the kills over the backlog; each one hits a worker with a delivery claimed."""
    timeline = []
    for k in range(1, options.kills + 1):
        threshold = base + total * k // (options.kills + 1)
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
        delivered = _delivery_counts(s)["delivered"] - base
        workers.start()
        timeline.append((f"delivery kill {k}", f"{victim} at {delivered}/{total} delivered"))
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
    """Apply and deliver through killed workers; check the inbox, outbox and the receiver."""
    with stack(workers=0, keep=options.keep) as s:
        workers = Workers(s)
        for _ in range(options.workers):
            workers.start()
        if not s.await_listeners(set(workers.live)):
            raise SetupError(f"workers not listening: {s.listeners()}")
        # Part 1: kills while a worker waits for the (slowed) status answer of an order.
        applying = [f"WKA-{n:05d}" for n in range(options.payments)]
        slow = {"delay_seconds": options.status_delay, "operations": ["core.status"]}
        s.control("POST", "/faults", slow)
        started = time.monotonic()
        apply_kills = kill_mid_apply(s, workers, options, applying)
        wait_for(
            "every payment's payment.succeeded",
            lambda: _succeeded(s) == len(applying),
            options.timeout,
        )
        applied = time.monotonic() - started
        s.control("DELETE", "/faults")
        first_batch = 2 * len(applying)
        wait_for(
            "delivery of the first batch",
            lambda: _delivery_counts(s)["delivered"] == first_batch,
            options.timeout,
        )
        apply_checks = apply_kill_checks(s, apply_kills, applying)
        # Part 2: kills while a worker waits for the receiver to answer a delivery.
        base = 2 * len(applying)
        s.receiver.delay_seconds = options.receiver_delay
        delivering = [f"WKD-{n:05d}" for n in range(options.payments)]
        started = time.monotonic()
        fill(s, delivering, options, before=len(applying))
        total = 2 * len(delivering)
        rows = kill_mid_delivery(s, workers, options, total, base)

        def converged() -> bool:
            counts = _delivery_counts(s)
            return counts["delivered"] == base + total or counts["dead"] > 0

        wait_for("delivery of the whole outbox", converged, options.timeout)
        elapsed = time.monotonic() - started
        drained = s.drain_inbox(options.timeout)
        counts = _delivery_counts(s)
        orders = applying + delivering
        checks = [
            *apply_checks,
            Check(
                counts["delivered"] == base + total and sum(counts.values()) == base + total,
                f"outbox delivered: {counts['delivered']}/{base + total} deliveries delivered, "
                f"{counts['pending']} pending, {counts['dead']} dead",
            ),
            s.inbox_check(drained),
        ]
        received, received_rows = receipt_checks(s, orders, options.kills)
        checks += received
        checks.append(s.audit())
        application = (
            f"{applied:.1f} s with {options.workers} workers, the status API answering "
            f"{options.status_delay} s late"
        )
        delivery = (
            f"{elapsed:.1f} s with {options.workers} workers, the receiver holding each request "
            f"{options.receiver_delay} s"
        )
        kill_rows = [
            (
                f"apply kill {n}",
                f"{k.victim} at {k.applied_before}/{len(applying)} applied, holding "
                f"{len(k.rows)} rows of {k.order_id}",
            )
            for n, k in enumerate(apply_kills, start=1)
        ]
        rows = [
            ("payments", f"{len(orders)} success, {base + total} deliveries"),
            ("application", application),
            ("arrival to applied", s.arrival_to_applied()),
            *kill_rows,
            ("delivery", delivery),
            *rows,
            *received_rows,
        ]
        if options.keep:
            rows.append(("kept", str(s.root)))
    return Result("Worker kill drill", rows, checks)


HELP = {
    "payments": "payments paid in each part, two deliveries each",
    "workers": "workers delivering at any time",
    "kills": "workers SIGKILLed mid-delivery, spread over the backlog",
    "apply_kills": "workers SIGKILLed mid-apply (waiting for the status answer)",
    "status_delay": "seconds the status API answers late while the apply kills happen",
    "receiver_delay": "seconds the receiver holds each request",
    "timeout": "seconds any one wait may take",
    "keep": "keep the drill's directory and logs",
}


def main(argv: list[str] | None = None) -> int:
    """Run the drill from the command line: exit 0, 1 (a check failed) or 2 (no stack)."""
    return run_drill("drills.worker_kill", __doc__ or "", Options, run, HELP, argv)


if __name__ == "__main__":
    sys.exit(main())
