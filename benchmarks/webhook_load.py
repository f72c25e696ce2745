"""Load benchmark of POST /payments/webhook against a bare Flask + psycopg2 baseline.

The baseline (benchmarks/baselines/flask_app.py) runs the same statements on the same tables
without the ORM or the rules, so the ratio is what the framework, the ORM and the rules cost.

Run from the project root: .venv/bin/python -m benchmarks.webhook_load [--duration 10]
[--rounds 3] [--connections 16] [--payments 8000]. Needs PostgreSQL on 127.0.0.1:5432 (user
postgres, trust) and wrk (apt-get install -y wrk). Exit code 0: targets met; 1: a target or
a check missed; 2: setup error.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import operator
import os
import random
import shutil
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import astuple, dataclass, replace
from pathlib import Path

from benchmarks.common import (
    QUIET,
    TICKS_PER_SECOND,
    BenchDatabase,
    SetupError,
    children_ticks,
    cpu_times,
    processes,
    run_benchmark,
    served,
    wait_quiet,
)

BASELINE = "benchmarks.baselines.flask_app:app"
LUA = Path(__file__).resolve().parent / "notifications.lua"

DATABASE = BenchDatabase("tiketq_bench")
SERVER_KEY = "SB-Mid-server-BENCH"
ORDER_PREFIX = "BENCH-"

# The targets the service must meet at 16 connections.
P99_TARGET_MS = 50.0
THROUGHPUT_TARGET = 0.70

# The notification mix: 30 % of deliveries repeat an earlier one (Midtrans retries), and one
# payment in ten is settled before its pending notification arrives.
DUPLICATE_SHARE = 0.30
SETTLED_FIRST_SHARE = 0.10
MIX_SEED = 20261126


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

VERIFY = """
WITH settled AS (
    SELECT DISTINCT order_id FROM notifications WHERE transaction_status = 'settlement'
)
SELECT
    (SELECT count(*) FROM settled),
    (SELECT count(*) FROM payments p JOIN settled s ON s.order_id = p.gateway_order_id
     WHERE p.status = 'success'),
    (SELECT count(*) FROM payments p JOIN settled s ON s.order_id = p.gateway_order_id
     WHERE (SELECT count(*) FROM outbox o
            WHERE o.payment_id = p.id AND o.event_type = 'payment.succeeded') = 1),
    (SELECT count(*) FROM payments p WHERE p.status = 'success'
     AND p.gateway_order_id NOT IN (SELECT order_id FROM settled)),
    (SELECT count(*) FROM outbox WHERE event_type = 'payment.succeeded'),
    (SELECT count(*) FROM notifications WHERE outcome = 'received')
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
    # CPU milliseconds per request in gunicorn and in PostgreSQL, from /proc.
    app_ms: float = 0.0
    database_ms: float = 0.0
    # Share of all CPUs that processes outside the benchmark used during the run.
    others: float = 0.0

    @property
    def rps(self) -> float:
        """Requests per second over the measured run."""
        return self.requests / self.seconds


@dataclass(frozen=True)
class Ticks:
    """CPU ticks used since boot, split by who used them."""

    busy: int  # the whole machine, in processes
    total: int  # the whole machine, busy or idle
    app: int  # gunicorn's master and workers
    database: int  # the bench database's sessions and PostgreSQL's own processes
    helpers: int  # wrk and kernel threads

    def __sub__(self, other: Ticks) -> Ticks:
        """What was used between two readings."""
        return Ticks(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True)
class Check:
    """The service database after its run."""

    settled: int
    success: int
    one_outbox: int
    success_unsettled: int
    outbox_rows: int
    stuck: int
    outcomes: dict[str, int]

    def __add__(self, other: Check) -> Check:
        """Two runs' checks together (each run starts from reseeded payments)."""
        counts = [a + b for a, b in zip(astuple(self)[:-1], astuple(other)[:-1], strict=True)]
        outcomes = Counter(self.outcomes) + Counter(other.outcomes)
        return Check(*counts, outcomes=dict(outcomes.most_common()))

    @property
    def ok(self) -> bool:
        """Every settled payment is success with exactly one payment.succeeded, nothing else."""
        return (
            self.settled == self.success == self.one_outbox == self.outbox_rows
            and self.success_unsettled == 0
            and self.stuck == 0
        )


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="flat-out runs per server, taking turns"
    )
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    # Enough that no server runs out of new notifications: replayed ones are cheaper to handle.
    parser.add_argument("--payments", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2, help="GUNICORN_WORKERS")
    parser.add_argument("--threads", type=int, default=4, help="GUNICORN_THREADS")
    parser.add_argument(
        "--wait-quiet", type=int, default=60, help="seconds to wait for other load to stop"
    )
    parser.add_argument(
        "--rate", type=int, default=100, help="requests/s of the paced run that measures latency"
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


def notification_mix(count: int, rng: random.Random) -> list[str]:
    """Each payment's pending and settlement, some out of order, and redeliveries, by time."""
    timeline: list[tuple[float, str]] = []
    for n in range(1, count + 1):
        order_id = f"{ORDER_PREFIX}{n:06d}"
        pending_at, settled_at = n, n + rng.uniform(2, 40)
        if rng.random() < SETTLED_FIRST_SHARE:
            pending_at = settled_at + rng.uniform(1, 20)
        timeline.append((pending_at, signed_body(order_id, "pending")))
        timeline.append((settled_at, signed_body(order_id, "settlement")))
    # Redeliveries come a little after the delivery they repeat, as Midtrans's retries do.
    extra = round(len(timeline) * DUPLICATE_SHARE / (1 - DUPLICATE_SHARE))
    repeats = [(at + rng.uniform(1, 30), body) for at, body in rng.choices(timeline, k=extra)]
    return [body for _, body in sorted(timeline + repeats, key=lambda item: item[0])]


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


def ticks(session: int) -> Ticks:
    """CPU ticks used since boot by the machine and by each part of the benchmark."""
    busy, total = cpu_times()
    postgres = DATABASE.backends()
    app = database = helpers = 0
    for process in processes():
        if process.session == session:
            app += process.ticks
        elif process.pid in postgres:
            database += process.ticks
        elif process.kernel_thread:
            helpers += process.ticks
    # wrk has exited and been waited for by then, so it counts among the children.
    return Ticks(busy, total, app, database, helpers + children_ticks())


def accounted(result: Result, used: Ticks) -> Result:
    """The result with the CPU its server and database spent per request, and others' share."""
    others = used.busy - used.app - used.database - used.helpers
    return replace(
        result,
        app_ms=used.app / TICKS_PER_SECOND * 1000 / max(1, result.requests),
        database_ms=used.database / TICKS_PER_SECOND * 1000 / max(1, result.requests),
        others=max(0, others) / max(1, used.total),
    )


@dataclass(frozen=True)
class Server:
    """A running server: its name in the table, its URL, and its session id for CPU accounting."""

    name: str
    url: str
    session: int


@dataclass(frozen=True)
class Measured:
    """One server's runs: flat out in turns with the other server, then paced."""

    rounds: list[Result]
    check: Check
    paced: Result

    @property
    def saturated(self) -> Result:
        """The flat-out rounds as one run: all requests over all seconds, CPU per request."""
        requests = sum(r.requests for r in self.rounds)

        def per_request(field: str) -> float:
            return sum(getattr(r, field) * r.requests for r in self.rounds) / max(1, requests)

        return Result(
            requests=requests,
            seconds=sum(r.seconds for r in self.rounds),
            p50_ms=statistics.median(r.p50_ms for r in self.rounds),
            p99_ms=statistics.median(r.p99_ms for r in self.rounds),
            non_2xx=sum(r.non_2xx for r in self.rounds),
            socket_errors=sum(r.socket_errors for r in self.rounds),
            app_ms=per_request("app_ms"),
            database_ms=per_request("database_ms"),
            others=max(r.others for r in self.rounds),
        )


def load(server: Server, bodies: Path, args: argparse.Namespace, rate: int = 0) -> Result:
    """From freshly reseeded payments and a quiet machine, one wrk run with its CPU accounted."""
    reseed(args.payments)
    wait_quiet(args.wait_quiet)
    before = ticks(server.session)
    result = wrk(server.url, bodies, args.duration, args, rate)
    return accounted(result, ticks(server.session) - before)


def measure(servers: list[Server], bodies: Path, args: argparse.Namespace) -> list[Measured]:
    """Warm each server up, load them flat out in turns, then each paced."""
    for server in servers:
        reseed(args.payments)
        wrk(server.url, bodies, args.warmup, args)
    rounds: dict[str, list[Result]] = {server.name: [] for server in servers}
    checks: dict[str, list[Check]] = {server.name: [] for server in servers}
    for n in range(args.rounds):
        # In alternating order, so that the machine slowing down for a while weighs on both alike.
        for server in servers if n % 2 == 0 else servers[::-1]:
            rounds[server.name].append(load(server, bodies, args))
            # Requests wrk left in flight when it stopped finish first.
            DATABASE.wait_idle()
            checks[server.name].append(verify())
    return [
        Measured(
            rounds[s.name],
            functools.reduce(operator.add, checks[s.name]),
            load(s, bodies, args, args.rate),
        )
        for s in servers
    ]


def verify() -> Check:
    """Read what the service's run left in its tables."""
    (row,) = DATABASE.rows(VERIFY)
    outcomes = dict(DATABASE.rows(OUTCOMES))
    return Check(*row, outcomes=outcomes)


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
    }


def print_table(args: argparse.Namespace, count: int, service: Measured, base: Measured) -> None:
    """What wrk measured, one row per server and run."""
    print(
        f"\nwebhook load: wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s, "
        f"{args.rounds} flat-out rounds per server in turns, "
        f"{args.payments} payments ({count} notifications), "
        f"gunicorn gthread {args.workers} workers x {args.threads} threads"
    )
    print(
        f"{'':17}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'non-2xx':>9}"
        f"{'errors':>8}{'app ms':>8}{'db ms':>7}{'others':>8}"
    )
    rows = (
        ("service", service.saturated),
        ("baseline", base.saturated),
        (f"service @{args.rate}/s", service.paced),
        (f"baseline @{args.rate}/s", base.paced),
    )
    for name, r in rows:
        print(
            f"{name:17}{r.rps:9.1f}{r.p50_ms:9.1f}{r.p99_ms:9.1f}{r.requests:10d}"
            f"{r.non_2xx:9d}{r.socket_errors:8d}"
            f"{r.app_ms:8.1f}{r.database_ms:7.1f}{r.others:8.0%}"
        )
    ratios = " ".join(f"{ratio:.1%}" for ratio in round_ratios(service, base))
    print(f"service/baseline req/s by round: {ratios}")


def round_ratios(service: Measured, base: Measured) -> list[float]:
    """The service's throughput over the baseline's, round by round."""
    return [s.rps / b.rps for s, b in zip(service.rounds, base.rounds, strict=True)]


def judge(args: argparse.Namespace, service: Measured, base: Measured, stream: int) -> bool:
    """Print each target and check with its verdict; True if all passed."""
    # The median round: one round disturbed by the shared machine does not decide it.
    ratio = statistics.median(round_ratios(service, base))
    paced = service.paced
    verdicts = [
        (
            max(r.requests for r in service.rounds + base.rounds) <= stream,
            f"same work: each server sent at most the {stream} notifications once "
            "(else raise --payments)",
        ),
        (
            ratio >= THROUGHPUT_TARGET,
            f"service/baseline throughput {ratio:.1%}, the median round "
            f"(target >= {THROUGHPUT_TARGET:.0%})",
        ),
        (
            paced.p99_ms < P99_TARGET_MS and paced.rps >= 0.95 * args.rate,
            f"service p99 {paced.p99_ms:.1f} ms at {paced.rps:.0f} req/s over "
            f"{args.connections} connections (target < {P99_TARGET_MS:.0f} ms at {args.rate}/s)",
        ),
        *(
            (
                r.non_2xx == r.socket_errors == 0,
                f"service answers ({name}): {r.non_2xx} non-2xx, {r.socket_errors} socket errors",
            )
            for name, r in (("flat out", service.saturated), ("paced", paced))
        ),
        *(
            (
                c.ok,
                f"{name} correctness: {c.success}/{c.settled} settled payments are success, "
                f"{c.one_outbox}/{c.settled} have exactly one payment.succeeded "
                f"({c.outbox_rows} rows); {c.success_unsettled} success without a "
                f"settlement, {c.stuck} notifications left 'received'",
            )
            for name, c in (("service", service.check), ("baseline", base.check))
        ),
    ]
    for ok, line in verdicts:
        print(f"{'ok  ' if ok else 'MISS'} {line}")
    print(
        f"note: flat out, {args.connections} connections queue for the servers' threads: "
        f"p99 {service.saturated.p99_ms:.0f} ms (service) and {base.saturated.p99_ms:.0f} ms "
        "(baseline) are mostly that wait"
    )
    for name, c in (("service", service.check), ("baseline", base.check)):
        print(f"{name} outcomes: " + ", ".join(f"{k} {v}" for k, v in c.outcomes.items()))
    runs = (*service.rounds, service.paced, *base.rounds, base.paced)
    if max(r.others for r in runs) > QUIET:
        print(f"WARNING: other processes took over {QUIET:.0%} of the CPUs; rerun when quiet")
    return all(ok for ok, _ in verdicts)


def run(args: argparse.Namespace, work: Path) -> bool:
    """Set up, measure and check the service and the baseline; True if all passed."""
    if shutil.which("wrk") is None:
        raise SetupError("wrk is not installed: apt-get install -y wrk")
    env = service_env(args, work)
    DATABASE.create(env)
    bodies = work / "notifications.jsonl"
    mix = notification_mix(args.payments, random.Random(MIX_SEED))
    bodies.write_text("\n".join(mix) + "\n")
    with (
        served("wsgi:app", env, work / "service.log") as (service_url, service_session),
        served(BASELINE, env, work / "baseline.log") as (base_url, base_session),
    ):
        servers = [
            Server("service", service_url, service_session),
            Server("baseline", base_url, base_session),
        ]
        service, base = measure(servers, bodies, args)
    print_table(args, len(mix), service, base)
    return judge(args, service, base, len(mix))


def main(argv: list[str]) -> int:
    """Run the benchmark; always stop the servers, keep or drop the database as asked."""
    args = parse_args(argv)
    return run_benchmark("webhook_load", DATABASE, lambda work: run(args, work), drop=args.drop)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
