"""Load benchmark of POST /payments/webhook and its worker against two synchronous baselines.

The service's door only verifies, stores and answers; `flask payments worker` then asks Midtrans's
status API about each order (one call for all the order's waiting rows) and applies the answer.
The baselines (benchmarks/baselines: bare Flask + psycopg2 under gunicorn, and FastAPI with a
SQLAlchemy session under uvicorn) do the whole job in the request: verify, store, ask the status
API, lock the payment, update it, insert the event and outbox rows, commit. All three talk to the
same Midtrans simulator, in its own process, that knows every seeded order.

Run from the project root: .venv/bin/python -m benchmarks.webhook_load [--duration 10]
[--rounds 3] [--connections 16] [--payments 8000]. Needs PostgreSQL on 127.0.0.1:5432 (user
postgres, trust) and wrk (apt-get install -y wrk). Exit code 0: targets met; 1: a target or
a check missed; 2: setup error.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import json
import math
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import astuple, dataclass, field
from pathlib import Path

from benchmarks.common import (
    BIN,
    QUIET,
    ROOT,
    TICKS_PER_SECOND,
    BenchDatabase,
    SetupError,
    children_ticks,
    cpu_times,
    free_port,
    processes,
    run_benchmark,
    served,
    started,
    wait_drained,
    wait_quiet,
    worker,
)

BASELINE = "benchmarks.baselines.flask_app:app"
FASTAPI_APP = "benchmarks.baselines.fastapi_app:app"
LUA = Path(__file__).resolve().parent / "notifications.lua"

DATABASE = BenchDatabase("tiketq_bench")
SERVER_KEY = "SB-Mid-server-BENCH"
ORDER_PREFIX = "BENCH-"

# The targets, at 16 connections: the door's p99 paced at --rate, its acknowledgement rate
# against the bare-Flask baseline's (synchronous) rate, and notifications applied end to end.
P99_TARGET_MS = 20.0
ACK_TARGET = 1.0  # x the Flask baseline's requests/s
APPLIED_TARGET = 0.70  # x the Flask baseline's requests/s
APPLIED_FASTAPI_TARGET = 1.0  # x the FastAPI baseline's requests/s

# The notification mix: 30 % of deliveries repeat an earlier one (Midtrans retries), and one
# payment in ten is settled before its pending notification arrives.
DUPLICATE_SHARE = 0.30
SETTLED_FIRST_SHARE = 0.10
MIX_SEED = 20261126
# One payment in five is still awaiting payment at Midtrans: only its pending notification comes.
AWAITING_SHARE = 0.20
AWAITING_SEED = 20261201

# Midtrans's transaction_status, as the service (and the baselines) show it.
SHOWN_AS = {"settlement": "success", "pending": "pending"}
SERVERS = ("service", "flask", "fastapi")
LABELS = {"service": "service", "flask": "flask baseline", "fastapi": "fastapi baseline"}

SERVICE_SEED = """
TRUNCATE payments, payment_events, notifications, outbox RESTART IDENTITY CASCADE;
INSERT INTO payments (
    id, order_id, attempt, gateway_order_id, amount, currency, status, payment_method,
    snap_token, snap_redirect_url, description, customer, items, expires_at, refunded_amount,
    request_fingerprint, created_at, updated_at, payment_details, needs_review)
SELECT gen_random_uuid(), o, 1, o, 150000, 'IDR', 'pending', 'bank_transfer',
    md5(o), 'http://127.0.0.1:9/snap/v4/redirection/' || md5(o), 'Payment for order ' || o,
    '{"email": "bench@example.co.id"}',
    jsonb_build_array(jsonb_build_object('id', o, 'name', 'CGK - DPS', 'price', 150000,
                                         'quantity', 1)),
    now() + interval '1 day', 0, encode(sha256(o::bytea), 'hex'), now(), now(), '{}', false
FROM (SELECT %(prefix)s || lpad(n::text, 6, '0') AS o FROM generate_series(1, %(count)s) n) s;
-- create_payment records the first event; the webhook loads a payment's events to add one.
INSERT INTO payment_events (payment_id, to_status, status_detail, source, data, created_at)
SELECT id, 'pending', 'creating', 'api', '{}', created_at FROM payments;
ANALYZE payments;
ANALYZE payment_events;
"""

# Every payment: its status, its payment.succeeded messages, whether a stored notification named it.
PAYMENTS = """
SELECT p.gateway_order_id, p.status,
    (SELECT count(*) FROM outbox o
     WHERE o.payment_id = p.id AND o.event_type = 'payment.succeeded'),
    EXISTS (SELECT 1 FROM notifications n WHERE n.order_id = p.gateway_order_id
            AND n.outcome NOT IN ('bad_signature', 'status_mismatch', 'malformed'))
FROM payments p
"""

AFTER_RUN = """
SELECT
    (SELECT count(*) FROM notifications WHERE outcome NOT IN ('received', 'failed')),
    (SELECT count(*) FROM notifications WHERE outcome IN ('received', 'failed')),
    (SELECT count(*) FROM payments WHERE status <> 'pending'),
    (SELECT count(*) FROM outbox WHERE event_type = 'payment.succeeded'),
    (SELECT extract(epoch FROM min(received_at)) FROM notifications)
"""

# Arrival to visible success: from the notification that made the payment success to the moment
# the change was written (the event row, inserted just before the commit), in milliseconds.
TO_SUCCESS = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
    percentile_cont(0.95) WITHIN GROUP (ORDER BY ms), count(*)
FROM (
    SELECT extract(epoch FROM e.created_at - n.received_at) * 1000 AS ms
    FROM payment_events e JOIN notifications n ON n.id = e.notification_id
    WHERE e.to_status = 'success' AND e.from_status IS DISTINCT FROM 'success'
) s
"""

OUTCOMES = "SELECT outcome, count(*) FROM notifications GROUP BY outcome ORDER BY 2 DESC"


@dataclass(frozen=True)
class Result:
    """What wrk measured for one server."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        """Requests per second over the measured run."""
        return self.requests / self.seconds


@dataclass(frozen=True)
class Ticks:
    """CPU ticks used since boot, split by who used them."""

    busy: int  # the whole machine, in processes
    total: int  # the whole machine, busy or idle
    app: int  # gunicorn's or uvicorn's master and workers
    worker: int  # the service's `flask payments worker`
    simulator: int
    database: int  # the bench database's sessions and PostgreSQL's own processes
    helpers: int  # wrk and kernel threads

    def __sub__(self, other: Ticks) -> Ticks:
        """What was used between two readings."""
        return Ticks(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True)
class Check:
    """What a run left in the tables, against what the simulator says of each order."""

    notified: int  # payments some stored notification named
    expected_success: int  # of those, settled at Midtrans
    success: int
    wrong: int  # payments not in the state Midtrans has them in
    one_outbox: int  # success payments with exactly one payment.succeeded
    outbox_rows: int
    stuck: int  # notifications left received or failed
    drained: bool = True  # the inbox emptied within --drain-timeout
    audit: int = 0  # `flask payments audit` violations (-1: it did not run cleanly)
    outcomes: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: Check) -> Check:
        """Two runs' checks together (each run starts from reseeded payments)."""
        counts = [a + b for a, b in zip(astuple(self)[:7], astuple(other)[:7], strict=True)]
        audit = -1 if -1 in (self.audit, other.audit) else self.audit + other.audit
        outcomes = Counter(self.outcomes) + Counter(other.outcomes)
        return Check(
            *counts,
            drained=self.drained and other.drained,
            audit=audit,
            outcomes=dict(outcomes.most_common()),
        )

    @property
    def ok(self) -> bool:
        """Every payment as Midtrans has it, one payment.succeeded per success, nothing left."""
        return (
            self.wrong == 0
            and self.expected_success == self.success == self.one_outbox == self.outbox_rows
            and self.stuck == 0
            and self.drained
            and self.audit == 0
        )


@dataclass(frozen=True)
class Run:
    """One server's measured run, from the first notification until its inbox was drained."""

    wrk: Result
    applied: int  # inbox rows that left "received"
    applied_seconds: float  # from the first arrival until the last was applied
    calls: int  # status calls the simulator answered
    changed: int  # payments whose status changed
    to_success: tuple[float, float, int]  # p50 ms, p95 ms, how many payments
    check: Check
    used: Ticks

    @property
    def applied_rate(self) -> float:
        """Notifications applied per second, end to end."""
        return self.applied / max(1e-9, self.applied_seconds)

    @property
    def calls_per_change(self) -> float:
        """Status calls per payment that changed (nan if none did)."""
        return self.calls / self.changed if self.changed else math.nan

    def cpu_ms(self, ticks: int) -> float:
        """CPU milliseconds per stored notification."""
        return ticks / TICKS_PER_SECOND * 1000 / max(1, self.wrk.requests)

    @property
    def others(self) -> float:
        """The share of all CPUs that processes outside the benchmark used."""
        u = self.used
        mine = u.app + u.worker + u.simulator + u.database + u.helpers
        return max(0, u.busy - mine) / max(1, u.total)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="flat-out runs per server, taking turns"
    )
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    # Enough that no server runs out of new notifications: replayed ones are cheaper to handle.
    parser.add_argument("--payments", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2, help="GUNICORN_WORKERS, uvicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="GUNICORN_THREADS")
    parser.add_argument(
        "--wait-quiet", type=int, default=60, help="seconds to wait for other load to stop"
    )
    parser.add_argument(
        "--drain-timeout",
        type=int,
        default=180,
        help="seconds the worker gets to empty the inbox after the load stops",
    )
    parser.add_argument(
        "--rate", type=int, default=100, help="requests/s of the paced run that measures latency"
    )
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=1,
        help="`flask payments worker` processes next to the service (they claim orders apart)",
    )
    parser.add_argument("--drop", action="store_true", help="drop the bench database at the end")
    return parser.parse_args(argv)


def reseed(count: int) -> None:
    """Put every payment back to pending with no notifications, then flush dirty pages."""
    DATABASE.reseed(SERVICE_SEED, {"prefix": ORDER_PREFIX, "count": count})


def signed_body(order_id: str, transaction_status: str) -> str:
    """A bank-transfer notification as Midtrans sends it, signed with the bench key."""
    status_code = "201" if transaction_status == "pending" else "200"
    body = {
        "transaction_time": "2026-11-26 14:00:00",
        "transaction_status": transaction_status,
        "transaction_id": hashlib.md5(order_id.encode()).hexdigest(),
        "status_message": "midtrans payment notification",
        "status_code": status_code,
        "payment_type": "bank_transfer",
        "order_id": order_id,
        "merchant_id": "G141532850",
        "gross_amount": "150000.00",
        "currency": "IDR",
        "va_numbers": [{"bank": "bca", "va_number": "12345678901"}],
        "expiry_time": "2026-11-27 14:00:00",
    }
    if transaction_status == "settlement":
        body["settlement_time"] = "2026-11-26 14:05:00"
    signed = order_id + status_code + body["gross_amount"] + SERVER_KEY
    body["signature_key"] = hashlib.sha512(signed.encode()).hexdigest()
    return json.dumps(body)


def order_id(n: int) -> str:
    """The n-th seeded payment's order id (1-based)."""
    return f"{ORDER_PREFIX}{n:06d}"


def awaiting_orders(count: int) -> frozenset[int]:
    """The payments (1-based numbers) the traveller has not paid yet at Midtrans."""
    rng = random.Random(AWAITING_SEED)
    return frozenset(n for n in range(1, count + 1) if rng.random() < AWAITING_SHARE)


def notification_mix(
    count: int, rng: random.Random, awaiting: frozenset[int] = frozenset()
) -> list[str]:
    """Each payment's pending and settlement, some out of order, and redeliveries, by time.

    Payments in `awaiting` get only their pending notification (they are not paid yet).
    """
    timeline: list[tuple[float, str]] = []
    for n in range(1, count + 1):
        pending_at, settled_at = n, n + rng.uniform(2, 40)
        if rng.random() < SETTLED_FIRST_SHARE:
            pending_at = settled_at + rng.uniform(1, 20)
        timeline.append((pending_at, signed_body(order_id(n), "pending")))
        if n not in awaiting:
            timeline.append((settled_at, signed_body(order_id(n), "settlement")))
    # Redeliveries come a little after the delivery they repeat, as Midtrans's retries do.
    extra = round(len(timeline) * DUPLICATE_SHARE / (1 - DUPLICATE_SHARE))
    repeats = [(at + rng.uniform(1, 30), body) for at, body in rng.choices(timeline, k=extra)]
    return [body for _, body in sorted(timeline + repeats, key=lambda item: item[0])]


# The Midtrans simulator, in its own process, knowing every seeded order.


@dataclass(frozen=True)
class Simulator:
    """The running simulator: its URL, its session id, and each order's transaction_status."""

    url: str
    session: int
    states: dict[str, str]

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("content-type", "application/json")
        auth = base64.b64encode(f"{SERVER_KEY}:".encode()).decode()
        request.add_header("authorization", f"Basic {auth}")
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else {}

    def status_calls(self) -> int:
        """Status calls answered since the last reset."""
        return int(self._call("GET", "/control/calls?operation=core.status")["total"])

    def reset_calls(self) -> None:
        """Count calls from zero."""
        self._call("DELETE", "/control/calls")


def _template(sim: Simulator, name: str, outcome: str) -> dict:
    """One transaction paid by BCA virtual account with `outcome`, as the simulator stores it."""
    snap = {
        "transaction_details": {"order_id": name, "gross_amount": 150000},
        "enabled_payments": ["bca_va"],
        "expiry": {"unit": "day", "duration": 7},
    }
    sim._call("POST", "/snap/v1/transactions", snap)
    sim._call("POST", f"/control/transactions/{name}/pay", {"method": "bca_va", "outcome": outcome})
    return sim._call("GET", f"/control/transactions/{name}")


def seed_simulator(sim: Simulator, state_file: Path, count: int) -> dict[str, str]:
    """Give the simulator every seeded order, paid or awaiting; return each order's status."""
    templates = {
        "settlement": _template(sim, "BENCH-TEMPLATE-PAID", "settlement"),
        "pending": _template(sim, "BENCH-TEMPLATE-AWAITING", "pending"),
    }
    awaiting = awaiting_orders(count)
    rows = []
    for n in range(1, count + 1):
        txn = copy.deepcopy(templates["pending" if n in awaiting else "settlement"])
        txn["order_id"] = order_id(n)
        txn["token"], txn["transaction_id"] = str(uuid.uuid4()), str(uuid.uuid4())
        txn["request"]["transaction_details"]["order_id"] = order_id(n)
        rows.append(
            (
                txn["order_id"],
                txn["transaction_id"],
                txn["token"],
                txn["created_at"],
                json.dumps(txn),
            )
        )
    # The simulator keeps its state in this SQLite file, a connection per operation: one bulk
    # insert, the way its Store.add writes a transaction, instead of 16 000 calls.
    conn = sqlite3.connect(state_file, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO transactions (order_id, transaction_id, token, created_at, state)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    # What the simulator now says, through its own API: the state every payment must end in.
    states = {
        txn["order_id"]: txn["transaction_status"]
        for txn in sim._call("GET", "/control/transactions")
        if txn["order_id"].startswith(ORDER_PREFIX) and "TEMPLATE" not in txn["order_id"]
    }
    answer = sim._call("GET", f"/v2/{order_id(1)}/status")
    if len(states) != count or answer.get("transaction_status") != states[order_id(1)]:
        raise SetupError(f"the simulator was not seeded: {len(states)} orders, {answer}")
    return states


@contextlib.contextmanager
def simulator(
    env: dict[str, str], work: Path, count: int, name: str = "simulator"
) -> Iterator[Simulator]:
    """A fresh Midtrans simulator in its own process, seeded with every order (files: name.*)."""
    port = free_port()
    state = work / f"{name}.sqlite3"
    command = [
        str(BIN / "python"), "-m", "midtrans_simulator", "--port", str(port),
        "--server-key", SERVER_KEY, "--state", str(state),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log = work / f"{name}.log"
    with started(command, env, log, f"{url}/control/faults") as process:
        sim = Simulator(url, process.pid, {})
        yield Simulator(url, process.pid, seed_simulator(sim, state, count))


# The servers and the service's worker.


@dataclass(frozen=True)
class Server:
    """A running server: its name, its URL, and its session id for CPU accounting."""

    name: str
    url: str
    session: int


@contextlib.contextmanager
def fastapi(env: dict[str, str], work: Path, workers: int) -> Iterator[tuple[str, int]]:
    """The FastAPI baseline under uvicorn; yield its URL and session id."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(BIN / "uvicorn"), FASTAPI_APP, "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--no-access-log",
    ]  # fmt: skip
    with started(command, env, work / "fastapi.log", f"{url}/health") as process:
        yield url, process.pid


def wrk(url: str, bodies: Path, seconds: int, args: argparse.Namespace, rate: int = 0) -> Result:
    """POST the bodies to url/payments/webhook with wrk for `seconds`, paced to `rate` if set."""
    command = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{seconds}s"]
    command += ["--latency", "-s", str(LUA), url, "--", str(bodies), str(args.wrk_threads)]
    env = {**os.environ, "WRK_INTERVAL_MS": str(1000 * args.wrk_threads / rate) if rate else "0"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, env=env)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise SetupError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    return Result(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        non_2xx=data["non_2xx"],
        socket_errors=sum(data[k] for k in ("connect_errors", "read_errors", "write_errors"))
        + data["timeouts"],
    )


def ticks(sessions: dict[str, int]) -> Ticks:
    """CPU ticks used since boot by the machine and by each part of the benchmark."""
    busy, total = cpu_times()
    postgres = DATABASE.backends()
    # The postmaster too: it has reaped the sessions that closed between the two readings (the
    # FastAPI baseline's pool closes its overflow connections after use).
    postgres |= {p.parent for p in processes() if p.pid in postgres}
    # Every `flask payments worker` process counts as the worker.
    by_session = {session: name.rstrip("0123456789") for name, session in sessions.items()}
    used: Counter = Counter()
    for process in processes():
        if process.session in by_session:
            used[by_session[process.session]] += process.ticks
        elif process.pid in postgres:
            used["database"] += process.ticks
        elif process.kernel_thread:
            used["helpers"] += process.ticks
    # wrk has exited and been waited for by then, so it counts among the children.
    used["helpers"] += children_ticks()
    names = ("app", "worker", "simulator", "database", "helpers")
    return Ticks(busy, total, *(used[name] for name in names))


def audit(env: dict[str, str]) -> int:
    """`flask payments audit`'s violation count; -1 if it could not say."""
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "payments", "audit"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    last = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode not in (0, 1) or not last.endswith("violation(s)"):
        return -1
    if done.returncode == 1:
        print(f"audit found violations:\n{done.stdout[-2000:]}", file=sys.stderr)
    return int(last.split()[0])


def check(states: dict[str, str], drained: bool, audited: int) -> Check:
    """Compare every payment with the simulator's state of its order."""
    notified = expected_success = success = wrong = one_outbox = 0
    for gateway_order_id, status, succeeded, was_notified in DATABASE.rows(PAYMENTS):
        expected = SHOWN_AS[states[gateway_order_id]] if was_notified else "pending"
        notified += was_notified
        expected_success += expected == "success"
        success += status == "success"
        wrong += status != expected
        one_outbox += status == "success" and succeeded == 1
    (_, stuck, _, outbox_rows, _) = DATABASE.rows(AFTER_RUN)[0]
    return Check(
        notified,
        expected_success,
        success,
        wrong,
        one_outbox,
        outbox_rows,
        stuck,
        drained=drained,
        audit=audited,
        outcomes=dict(DATABASE.rows(OUTCOMES)),
    )


@dataclass
class Bench:
    """Everything a run needs: the arguments, the simulator, the servers, the stream."""

    args: argparse.Namespace
    env: dict[str, str]  # the service's (and its worker's and audit's)
    sim: Simulator
    servers: dict[str, Server]
    bodies: Path
    worker_log: Path

    def run(self, name: str, seconds: int, rate: int = 0, *, judged: bool = True) -> Run:
        """From reseeded payments and a quiet machine: load one server, wait for its inbox."""
        server = self.servers[name]
        reseed(self.args.payments)
        self.sim.reset_calls()
        with contextlib.ExitStack() as stack:
            sessions = {"app": server.session, "simulator": self.sim.session}
            if name == "service":
                for n in range(self.args.worker_processes):
                    sessions[f"worker{n}"] = stack.enter_context(
                        worker(DATABASE, self.env, self.worker_log)
                    )
            wait_quiet(self.args.wait_quiet)
            before = ticks(sessions)
            started_at = time.time()
            result = wrk(server.url, self.bodies, seconds, self.args, rate)
            # Nothing waits for a baseline; the service's worker may have a backlog to apply.
            done_at, drained = wait_drained(DATABASE, self.args.drain_timeout)
            used = ticks(sessions) - before
        DATABASE.wait_idle()
        applied, _, changed, _, first = DATABASE.rows(AFTER_RUN)[0]
        p50, p95, paid = DATABASE.rows(TO_SUCCESS)[0]
        calls = self.sim.status_calls()
        audited = audit(self.env) if judged and name == "service" else 0
        return Run(
            wrk=result,
            applied=applied,
            applied_seconds=done_at - (float(first) if first is not None else started_at),
            calls=calls,
            changed=changed,
            to_success=(p50 or math.nan, p95 or math.nan, paid),
            check=check(self.sim.states, drained, audited),
            used=used,
        )


@dataclass(frozen=True)
class Measured:
    """One server's flat-out rounds (in turns with the others) and its paced run."""

    rounds: list[Run]
    paced: Run

    @property
    def check(self) -> Check:
        """Every run's check together."""
        total = self.paced.check
        for run in self.rounds:
            total = total + run.check
        return total


def median(values: list[float]) -> float:
    """The median, nan-safe for an empty list."""
    return statistics.median(values) if values else math.nan


def measure(bench: Bench) -> dict[str, Measured]:
    """Warm each server up, load them flat out in turns, then each paced."""
    for name in SERVERS:
        bench.run(name, bench.args.warmup, judged=False)
    rounds: dict[str, list[Run]] = {name: [] for name in SERVERS}
    for n in range(bench.args.rounds):
        # In alternating order, so that the machine slowing down for a while weighs on all alike.
        for name in SERVERS if n % 2 == 0 else SERVERS[::-1]:
            rounds[name].append(bench.run(name, bench.args.duration))
    return {
        name: Measured(rounds[name], bench.run(name, bench.args.duration, bench.args.rate))
        for name in SERVERS
    }


def ratios(ours: list[float], theirs: list[float]) -> list[float]:
    """Round by round, ours over theirs."""
    return [a / b for a, b in zip(ours, theirs, strict=True)]


def print_report(args: argparse.Namespace, count: int, measured: dict[str, Measured]) -> None:
    """What was measured, side by side: one row per server, flat out and paced."""
    print(
        f"\nwebhook load: wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s, "
        f"{args.rounds} flat-out rounds per server in turns, "
        f"{args.payments} payments ({count} notifications, {AWAITING_SHARE:.0%} of the payments "
        "still awaiting payment at Midtrans);"
        f"\nservice and flask: gunicorn gthread {args.workers} workers x {args.threads} threads "
        f"(service + {args.worker_processes} `flask payments worker`); fastapi: uvicorn "
        f"{args.workers} workers; one Midtrans simulator in its own process for all"
    )
    print(
        "ack = 2xx answers/s (wrk); applied = inbox rows applied/s from the first arrival until "
        "the inbox is empty;\ncalls/chg = status calls per payment that changed; to success = "
        "arrival of the notification that made a payment success until the change was written"
    )
    header = (
        f"{'':20}{'ack/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'applied/s':>10}{'calls/chg':>10}"
        f"{'success p50':>12}{'p95 ms':>8}{'sent':>7}{'non-2xx':>8}{'errors':>7}"
    )
    cpu = (
        f"{'':20}{'app':>8}{'worker':>8}{'db':>8}{'sim':>8}{'others':>8}  (CPU ms per notification)"
    )

    def row(label: str, runs: list[Run]) -> str:
        def med(get) -> float:  # noqa: ANN001
            return median([get(r) for r in runs])

        return (
            f"{label:20}{med(lambda r: r.wrk.rps):8.1f}{med(lambda r: r.wrk.p50_ms):8.1f}"
            f"{med(lambda r: r.wrk.p99_ms):8.1f}{med(lambda r: r.applied_rate):10.1f}"
            f"{med(lambda r: r.calls_per_change):10.2f}{med(lambda r: r.to_success[0]):12.1f}"
            f"{med(lambda r: r.to_success[1]):8.1f}{sum(r.wrk.requests for r in runs):7d}"
            f"{sum(r.wrk.non_2xx for r in runs):8d}{sum(r.wrk.socket_errors for r in runs):7d}"
        )

    def cpu_row(label: str, runs: list[Run]) -> str:
        requests = sum(r.wrk.requests for r in runs)
        used = [sum(getattr(r.used, k) for r in runs) for k in ("app", "worker", "database")]
        used.append(sum(r.used.simulator for r in runs))
        cells = "".join(f"{t / TICKS_PER_SECOND * 1000 / max(1, requests):8.2f}" for t in used)
        return f"{label:20}{cells}{max(r.others for r in runs):8.0%}"

    print("\nflat out (median of the rounds; sent, non-2xx and errors summed)")
    print(header)
    for name in SERVERS:
        print(row(LABELS[name], measured[name].rounds))
    print(f"\npaced at {args.rate}/s")
    print(header)
    for name in SERVERS:
        print(row(f"{LABELS[name]}", [measured[name].paced]))
    print("\nCPU, flat-out rounds together")
    print(cpu)
    for name in SERVERS:
        print(cpu_row(LABELS[name], measured[name].rounds))
    print("\nby round (in the order run)")
    for n in range(args.rounds):
        order = SERVERS if n % 2 == 0 else SERVERS[::-1]
        cells = "  ".join(
            f"{name} ack {measured[name].rounds[n].wrk.rps:.0f}/s applied "
            f"{measured[name].rounds[n].applied_rate:.0f}/s "
            f"({measured[name].rounds[n].applied_seconds:.1f} s)"
            for name in order
        )
        print(f"  round {n + 1}: {cells}")


def judge(args: argparse.Namespace, measured: dict[str, Measured], stream: int) -> bool:
    """Print each target and check with its verdict; True if all passed."""
    service, flask, fast = (measured[name] for name in SERVERS)
    # The median round: one round disturbed by the shared machine does not decide it.
    ack = ratios([r.wrk.rps for r in service.rounds], [r.wrk.rps for r in flask.rounds])
    applied = ratios([r.applied_rate for r in service.rounds], [r.wrk.rps for r in flask.rounds])
    applied_fast = ratios(
        [r.applied_rate for r in service.rounds], [r.wrk.rps for r in fast.rounds]
    )
    paced = service.paced.wrk
    every_run = [run for m in measured.values() for run in (*m.rounds, m.paced)]

    def by_round(values: list[float]) -> str:
        return " ".join(f"{v:.2f}x" for v in values)

    verdicts = [
        (
            max(r.wrk.requests for r in every_run) <= stream,
            f"same work: each server sent at most the {stream} notifications once "
            "(else raise --payments)",
        ),
        (
            median(ack) >= ACK_TARGET,
            f"service ack rate {median(ack):.2f}x the flask baseline's, the median round "
            f"(target >= {ACK_TARGET:.1f}x; rounds {by_round(ack)})",
        ),
        (
            paced.p99_ms < P99_TARGET_MS and paced.rps >= 0.95 * args.rate,
            f"service ack p99 {paced.p99_ms:.1f} ms at {paced.rps:.0f} req/s over "
            f"{args.connections} connections (target < {P99_TARGET_MS:.0f} ms at {args.rate}/s)",
        ),
        (
            median(applied) >= APPLIED_TARGET,
            f"service applied {median(applied):.2f}x the flask baseline's rate, the median round "
            f"(target >= {APPLIED_TARGET:.1f}x; rounds {by_round(applied)})",
        ),
        (
            median(applied_fast) >= APPLIED_FASTAPI_TARGET,
            f"service applied {median(applied_fast):.2f}x the fastapi baseline's rate, the "
            f"median round (target >= {APPLIED_FASTAPI_TARGET:.1f}x; "
            f"rounds {by_round(applied_fast)})",
        ),
        (
            sum(r.wrk.non_2xx + r.wrk.socket_errors for r in (*service.rounds, service.paced)) == 0,
            f"service answers: {sum(r.wrk.non_2xx for r in (*service.rounds, service.paced))} "
            f"non-2xx, {sum(r.wrk.socket_errors for r in (*service.rounds, service.paced))} "
            "socket errors",
        ),
        *(
            (
                c.ok,
                f"{LABELS[name]} correctness: {c.wrong} of {c.notified} notified payments not in "
                f"the simulator's state; {c.success}/{c.expected_success} paid payments success, "
                f"{c.one_outbox} with exactly one payment.succeeded ({c.outbox_rows} rows); "
                f"{c.stuck} notifications left waiting"
                + ("" if c.drained else "; inbox NOT drained in time")
                + ("" if name != "service" else f"; audit: {c.audit} violation(s)"),
            )
            for name, c in ((name, m.check) for name, m in measured.items())
        ),
    ]
    for ok, line in verdicts:
        print(f"{'ok  ' if ok else 'MISS'} {line}")
    for name in ("flask", "fastapi"):
        runs = (*measured[name].rounds, measured[name].paced)
        print(
            f"note: {LABELS[name]} answers: {sum(r.wrk.non_2xx for r in runs)} non-2xx, "
            f"{sum(r.wrk.socket_errors for r in runs)} socket errors (wrk times out after 2 s)"
        )
    for name, m in measured.items():
        print(f"{name} outcomes: " + ", ".join(f"{k} {v}" for k, v in m.check.outcomes.items()))
    if max(r.others for r in every_run) > QUIET:
        print(f"WARNING: other processes took over {QUIET:.0%} of the CPUs; rerun when quiet")
    return all(ok for ok, _ in verdicts)


def service_env(
    args: argparse.Namespace, work: Path, database: BenchDatabase = DATABASE
) -> dict[str, str]:
    """The environment the servers (and the migrations) run with, on `database`."""
    return {
        **os.environ,
        # As `make run` and the Docker image do: metrics shared by the gunicorn workers.
        "PROMETHEUS_MULTIPROC_DIR": str(work / "prometheus"),
        "DATABASE_URL": database.url,
        "MIDTRANS_SERVER_KEY": SERVER_KEY,
        "MIDTRANS_CLIENT_KEY": "SB-Mid-client-BENCH",
        "MIDTRANS_SIMULATOR": "true",
        # Only keeps the in-app simulator unmounted: no Midtrans, or one of the run's own.
        "MIDTRANS_BASE_URL": "http://127.0.0.1:9",
        "GUNICORN_WORKERS": str(args.workers),
        "GUNICORN_THREADS": str(args.threads),
        # Nobody to confirm payments to: the worker marks the outbox rows dispatched and delivers
        # nothing, as the baselines only insert them (the default host does not resolve here).
        "TRANSACTION_SERVICE_URL": "",
    }


def run(args: argparse.Namespace, work: Path) -> bool:
    """Set up, measure and check the service and the baselines; True if all passed."""
    if shutil.which("wrk") is None:
        raise SetupError("wrk is not installed: apt-get install -y wrk")
    env = service_env(args, work)
    DATABASE.create(env)
    bodies = work / "notifications.jsonl"
    mix = notification_mix(args.payments, random.Random(MIX_SEED), awaiting_orders(args.payments))
    bodies.write_text("\n".join(mix) + "\n")
    with simulator(env, work, args.payments) as sim:
        env = {**env, "MIDTRANS_BASE_URL": sim.url}
        with (
            served("wsgi:app", env, work / "service.log") as (service_url, service_session),
            served(BASELINE, env, work / "flask.log") as (flask_url, flask_session),
            fastapi(env, work, args.workers) as (fastapi_url, fastapi_session),
        ):
            servers = {
                "service": Server("service", service_url, service_session),
                "flask": Server("flask", flask_url, flask_session),
                "fastapi": Server("fastapi", fastapi_url, fastapi_session),
            }
            bench = Bench(args, env, sim, servers, bodies, work / "worker.log")
            measured = measure(bench)
    print_report(args, len(mix), measured)
    return judge(args, measured, len(mix))


def main(argv: list[str]) -> int:
    """Run the benchmark; always stop the servers, keep or drop the database as asked."""
    args = parse_args(argv)
    return run_benchmark("webhook_load", DATABASE, lambda work: run(args, work), drop=args.drop)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
