"""Mixed-load benchmark: creates, reads, status checks and notifications against two baselines.

Run from the project root: .venv/bin/python -m benchmarks.mixed_load [--duration 20]
[--clients 16] [--mix create=10,read=40,status=25,notify=25]. Needs PostgreSQL on
127.0.0.1:5432 (user postgres, trust). Exit code 0: measured cleanly; 1: unexpected answers or a
failed check; 2: setup error.

The service's webhook only stores a notification: one `flask payments worker` runs beside its
gunicorn and applies it, and the checks wait until the inbox is empty. Each server's simulator
knows every seeded order (paid or awaiting payment, as in the webhook benchmark), so that the
baselines' status calls and the worker's find the same answers.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import math
import multiprocessing
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import astuple, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.common import (
    BIN,
    QUIET,
    TICKS_PER_SECOND,
    BenchDatabase,
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
from benchmarks.webhook_load import (
    ORDER_PREFIX,
    SERVICE_SEED,
    awaiting_orders,
    notification_mix,
    service_env,
    simulator,
)

DATABASE = BenchDatabase("tiketq_mixed")
MIX_SEED = 20261127

# Endpoint name, how the table labels it, and the statuses a clean run answers with.
ENDPOINTS = {
    "create": ("POST /payments", {201}),
    "read": ("GET /payments/<id>", {200}),
    "status": ("GET /payments/<id>/status", {200}),
    "notify": ("POST /payments/webhook", {200}),
}
SERVERS = ("service", "flask", "fastapi")
LABELS = {"service": "service", "flask": "flask baseline", "fastapi": "fastapi baseline"}
APPS = {"service": "wsgi:app", "flask": "benchmarks.baselines.flask_app:app"}
FASTAPI_APP = "benchmarks.baselines.fastapi_app:app"

CREATE_BODY = {
    "amount": 150000,
    "payment_method": "bank_transfer",
    "customer_details": {"email": "bench@example.co.id"},
    "description": "mixed load",
    "expiry_duration": 1,
}
JSON_HEADERS = {"Content-Type": "application/json"}

# Closed: applied, with an outcome. "failed" (no usable status answer) still waits to be applied.
AFTER_RUN = """
SELECT
    (SELECT count(*) FROM payments WHERE order_id LIKE %(phase)s AND snap_token IS NOT NULL),
    (SELECT count(*) FROM notifications WHERE outcome NOT IN ('received', 'failed'))
"""


@dataclass(frozen=True)
class Plan:
    """What every load-generating client of one run shares."""

    url: str
    phase: str  # in created order ids, so that warm-up and measured creates never collide
    start: float  # time.monotonic(), the same clock in every process
    end: float
    mix: tuple[tuple[str, int], ...]
    payment_ids: tuple[str, ...]
    notifications: tuple[str, ...]
    clients: int


@dataclass
class Tally:
    """What one endpoint answered during a run."""

    latencies: list[float] = field(default_factory=list)  # seconds, answered requests only
    statuses: Counter = field(default_factory=Counter)
    socket_errors: int = 0

    def add(self, other: Tally) -> None:
        """Merge another client's tally into this one."""
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.socket_errors += other.socket_errors

    def unexpected(self, endpoint: str) -> int:
        """Answers other than the endpoint's expected ones, socket errors included."""
        expected = ENDPOINTS[endpoint][1]
        wrong = sum(n for code, n in self.statuses.items() if code not in expected)
        return wrong + self.socket_errors

    def percentile(self, share: float) -> float:
        """The nearest-rank percentile latency in milliseconds (0 without requests)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(share * len(ordered)) - 1)] * 1000


@dataclass(frozen=True)
class Ticks:
    """CPU ticks used since boot, split by who used them."""

    busy: int  # the whole machine, in processes
    total: int  # the whole machine, busy or idle
    app: int  # the server's processes
    worker: int  # the service's `flask payments worker`
    simulator: int
    database: int  # the benchmark database's sessions and PostgreSQL's own processes
    helpers: int  # the load generator and kernel threads

    def __sub__(self, other: Ticks) -> Ticks:
        """What was used between two readings."""
        return Ticks(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True)
class Run:
    """One server's measured run."""

    seconds: float
    tallies: dict[str, Tally]
    used: Ticks
    created_rows: int  # payments of the run with a Snap token
    closed_notifications: int
    drained: bool  # the inbox emptied within --drain-timeout after the load
    drain_seconds: float  # from the end of the load until then

    @property
    def requests(self) -> int:
        """Answered requests over all endpoints."""
        return sum(len(t.latencies) for t in self.tallies.values())

    def total(self) -> Tally:
        """All endpoints together."""
        merged = Tally()
        for tally in self.tallies.values():
            merged.add(tally)
        return merged

    def unexpected(self) -> int:
        """Unexpected answers over all endpoints."""
        return sum(t.unexpected(e) for e, t in self.tallies.items())

    def checks_ok(self) -> bool:
        """Every 201 create has its row with a token; every 200 notification was applied."""
        return (
            self.created_rows >= self.tallies["create"].statuses[201]
            and self.closed_notifications >= self.tallies["notify"].statuses[200]
            and self.drained
        )

    def cpu_ms(self, ticks: int) -> float:
        """CPU milliseconds per answered request."""
        return ticks / TICKS_PER_SECOND * 1000 / max(1, self.requests)


def parse_mix(text: str) -> tuple[tuple[str, int], ...]:
    """`create=10,read=40,...` as (endpoint, weight) pairs."""
    mix = []
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in ENDPOINTS or not weight.strip().isdigit():
            raise argparse.ArgumentTypeError(f"bad mix entry {part!r}")
        mix.append((name.strip(), int(weight)))
    if sum(weight for _, weight in mix) <= 0:
        raise argparse.ArgumentTypeError("the mix needs a positive weight")
    return tuple(mix)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per server")
    parser.add_argument("--clients", type=int, default=16, help="concurrent closed-loop clients")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--mix", type=parse_mix, default=parse_mix("create=10,read=40,status=25,notify=25")
    )
    parser.add_argument("--payments", type=int, default=500, help="seeded pending payments")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn and uvicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="GUNICORN_THREADS")
    parser.add_argument("--refresh-seconds", type=int, default=5, help="STATUS_REFRESH_SECONDS")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="which of service,flask,fastapi to run"
    )
    parser.add_argument(
        "--wait-quiet", type=int, default=15, help="seconds to wait for other load to stop"
    )
    parser.add_argument(
        "--drain-timeout",
        type=int,
        default=120,
        help="seconds the service's worker gets to empty the inbox after the load",
    )
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    if not args.servers or set(args.servers) - set(SERVERS):
        parser.error(f"--servers takes some of {','.join(SERVERS)}")
    return args


# The load generator: processes x threads, each thread one keep-alive client in a closed loop.


def _request(
    plan: Plan, endpoint: str, rng: random.Random, notes: Iterator[str], n: int, client: int
) -> tuple[str, str, str | None]:
    """(method, path, body) of the client's n-th request, to `endpoint`."""
    if endpoint == "create":
        order_id = f"MIX-{plan.phase}-{client:03d}-{n:06d}"
        items = [{"id": order_id, "name": "CGK - DPS GA-404", "price": 150000, "quantity": 1}]
        body = {**CREATE_BODY, "order_id": order_id, "item_details": items}
        return "POST", "/payments", json.dumps(body)
    if endpoint == "notify":
        return "POST", "/payments/webhook", next(notes)
    payment_id = rng.choice(plan.payment_ids)
    suffix = "/status" if endpoint == "status" else ""
    return "GET", f"/payments/{payment_id}{suffix}", None


def _client(plan: Plan, index: int, out: dict[str, Tally]) -> None:
    """One closed-loop client: send, wait for the answer, send the next, until the end."""
    address = urlsplit(plan.url)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    rng = random.Random(MIX_SEED + index)
    names, weights = zip(*plan.mix, strict=True)
    # Client k sends notifications k, k+C, k+2C...: together the clients walk the stream in order.
    notes = itertools.cycle(plan.notifications[index :: plan.clients] or plan.notifications)
    time.sleep(max(0.0, plan.start - time.monotonic()))
    for n in itertools.count():
        if time.monotonic() >= plan.end:
            break
        endpoint = rng.choices(names, weights)[0]
        method, path, body = _request(plan, endpoint, rng, notes, n, index)
        began = time.perf_counter()
        try:
            conn.request(method, path, body, JSON_HEADERS if body else {})
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            status = None
        elapsed = time.perf_counter() - began
        if time.monotonic() > plan.end:
            break  # answered after the end: not part of the measured window
        tally = out.setdefault(endpoint, Tally())
        if status is None:
            tally.socket_errors += 1
        else:
            tally.statuses[status] += 1
            tally.latencies.append(elapsed)
    conn.close()


def _drive(plan: Plan, clients: range) -> dict[str, Tally]:
    """Run some of the clients as threads of this process; their merged tallies."""
    outs: list[dict[str, Tally]] = [{} for _ in clients]
    threads = [
        threading.Thread(target=_client, args=(plan, index, out))
        for index, out in zip(clients, outs, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return merged(outs)


def merged(parts: list[dict[str, Tally]]) -> dict[str, Tally]:
    """Every endpoint's tally over all clients (or processes)."""
    total = {endpoint: Tally() for endpoint in ENDPOINTS}
    for part in parts:
        for endpoint, tally in part.items():
            total[endpoint].add(tally)
    return total


def generate(plan: Plan, processes: int) -> dict[str, Tally]:
    """Run plan.clients clients spread over `processes` processes; every endpoint's tally."""
    groups = [range(p, plan.clients, processes) for p in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.starmap(_drive, [(plan, group) for group in groups if group])
        pool.close()
        pool.join()
    return merged(results)


def load(
    url: str, phase: str, seconds: int, stream: tuple[str, ...], args: argparse.Namespace
) -> dict[str, Tally]:
    """Load the server at url for `seconds` with the mix over the freshly seeded payments."""
    ids = tuple(str(row[0]) for row in DATABASE.rows("SELECT id FROM payments"))
    # A moment for the processes to fork and connect, so that all start together.
    start = time.monotonic() + 0.5
    plan = Plan(url, phase, start, start + seconds, args.mix, ids, stream, args.clients)
    return generate(plan, args.processes)


# Setting up and measuring each server.


def reseed(count: int) -> None:
    """Empty the payment tables and seed `count` pending payments, then flush dirty pages."""
    DATABASE.reseed(SERVICE_SEED, {"prefix": ORDER_PREFIX, "count": count})


def base_env(args: argparse.Namespace, work: Path) -> dict[str, str]:
    """The environment every server (and the migrations) runs with."""
    return {
        **service_env(args, work, DATABASE),
        "STATUS_REFRESH_SECONDS": str(args.refresh_seconds),
        "SECRET_KEY": "mixed-load-benchmark",
    }


@contextlib.contextmanager
def server(name: str, env: dict[str, str], work: Path, workers: int) -> Iterator[tuple[str, int]]:
    """Serve one of SERVERS; yield its URL and session id."""
    log = work / f"{name}.log"
    if name in APPS:
        with served(APPS[name], env, log) as running:
            yield running
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(BIN / "uvicorn"), FASTAPI_APP, "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers),
    ]  # fmt: skip
    with started(command, env, log, f"{url}/health") as process:
        yield url, process.pid


def ticks(app_session: int, simulator_session: int, worker_session: int | None = None) -> Ticks:
    """CPU ticks used since boot by the machine and by each part of the benchmark."""
    busy, total = cpu_times()
    postgres = DATABASE.backends()
    # The postmaster's reaped children: connections that closed between the two readings (the
    # FastAPI baseline's SQLAlchemy pool closes its overflow connections after each use).
    postgres |= _parents(postgres)
    used = Counter()
    for process in processes():
        if process.session == app_session:
            used["app"] += process.ticks
        elif process.session == worker_session:
            used["worker"] += process.ticks
        elif process.session == simulator_session:
            used["simulator"] += process.ticks
        elif process.pid in postgres:
            used["database"] += process.ticks
        elif process.kernel_thread:
            used["helpers"] += process.ticks
    # The load generator's processes have been reaped by then, so they count among children.
    used["helpers"] += children_ticks()
    names = ("app", "worker", "simulator", "database", "helpers")
    return Ticks(busy, total, *(used[name] for name in names))


def _parents(pids: set[int]) -> set[int]:
    """The parent processes of those pids that still run."""
    return {process.parent for process in processes() if process.pid in pids}


def applying(name: str, env: dict[str, str], work: Path) -> contextlib.AbstractContextManager:
    """The service's worker (yielding its session id) while the block runs; None for baselines."""
    if name != "service":
        return contextlib.nullcontext()
    return worker(DATABASE, env, work / "worker.log")


def measure(name: str, env: dict[str, str], work: Path, args: argparse.Namespace) -> Run:
    """Warm a server up, reseed, wait for quiet, measure it under the mix, wait for its inbox."""
    awaiting = awaiting_orders(args.payments)
    stream = tuple(notification_mix(args.payments, random.Random(MIX_SEED), awaiting))
    with simulator(env, work, args.payments, f"{name}-simulator") as midtrans:
        env = {**env, "MIDTRANS_BASE_URL": midtrans.url}
        reseed(args.payments)
        with server(name, env, work, args.workers) as (url, session):
            with applying(name, env, work):
                load(url, "w", args.warmup, stream, args)
                # Applied before the reseed, which would otherwise wait on the worker's locks.
                wait_drained(DATABASE, args.drain_timeout)
            reseed(args.payments)
            # A fresh worker, as the webhook benchmark starts one for every run.
            with applying(name, env, work) as worker_session:
                wait_quiet(args.wait_quiet)
                before = ticks(session, midtrans.session, worker_session)
                tallies = load(url, "m", args.duration, stream, args)
                ended = time.time()
                # Nothing waits for a baseline (it applied in the request); the worker may not
                # be done. The CPU it takes meanwhile is part of the notifications' cost.
                done_at, drained = wait_drained(DATABASE, args.drain_timeout)
                used = ticks(session, midtrans.session, worker_session) - before
            DATABASE.wait_idle()
    created, closed = DATABASE.rows(AFTER_RUN, {"phase": "MIX-m-%"})[0]
    return Run(args.duration, tallies, used, created, closed, drained, done_at - ended)


# The report.


def _row(label: str, tally: Tally, seconds: float, endpoint: str | None) -> str:
    unexpected = tally.unexpected(endpoint) if endpoint else tally.socket_errors
    return (
        f"  {label:26}{len(tally.latencies) / seconds:9.1f}{tally.percentile(0.5):9.1f}"
        f"{tally.percentile(0.99):9.1f}{len(tally.latencies):10d}{unexpected:12d}"
    )


def _ratio_row(label: str, ours: Tally, theirs: Tally) -> str:
    cells = [
        (len(ours.latencies), len(theirs.latencies)),
        (ours.percentile(0.5), theirs.percentile(0.5)),
        (ours.percentile(0.99), theirs.percentile(0.99)),
    ]
    text = "".join(f"{a / b:8.2f}x" if b else f"{'-':>9}" for a, b in cells)
    return f"  {label:26}{text}"


def print_endpoint(
    title: str, tallies: dict[str, Tally], runs: dict[str, Run], endpoint: str | None
) -> None:
    """One endpoint's table: each server, then the service against each baseline."""
    print(f"\n{title:28}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'unexpected':>12}")
    for name, tally in tallies.items():
        print(_row(LABELS[name], tally, runs[name].seconds, endpoint))
    if "service" in tallies:
        for name in [name for name in tallies if name != "service"]:
            print(_ratio_row(f"service/{name}", tallies["service"], tallies[name]))


def print_report(args: argparse.Namespace, runs: dict[str, Run]) -> None:
    """Per-endpoint tables, all endpoints together, CPU, and any unexpected answers."""
    mix = " ".join(f"{e} {w * 100 / sum(w for _, w in args.mix):.0f}%" for e, w in args.mix)
    print(
        f"\nmixed load: {args.clients} closed-loop keep-alive clients ({args.processes} processes),"
        f" {args.duration} s per server after {args.warmup} s warm-up; mix {mix};"
        f"\n{args.payments} seeded payments; STATUS_REFRESH_SECONDS={args.refresh_seconds};"
        f" service and flask: gunicorn gthread {args.workers} workers x {args.threads} threads;"
        f" fastapi: uvicorn {args.workers} workers; simulator in its own process;"
        "\nservice + 1 `flask payments worker`, whose inbox is drained after the load (CPU counted"
        " until then)"
    )
    print("ratios: req/s service/baseline (higher is better), p50/p99 (lower is better)")
    for endpoint, (title, _) in ENDPOINTS.items():
        tallies = {name: run.tallies[endpoint] for name, run in runs.items()}
        print_endpoint(f"{title}", tallies, runs, endpoint)
    print_endpoint("all endpoints", {n: r.total() for n, r in runs.items()}, runs, None)
    print(
        f"\n{'CPU ms per request':28}{'app':>9}{'worker':>9}{'db':>9}{'sim':>9}{'others':>9}"
        f"{'drained after':>15}"
    )
    for name, run in runs.items():
        u = run.used
        mine = u.app + u.worker + u.simulator + u.database + u.helpers
        others = max(0, u.busy - mine) / max(1, u.total)
        drained = f"{run.drain_seconds:.1f} s" if run.drained else "NOT drained"
        print(
            f"  {LABELS[name]:26}{run.cpu_ms(u.app):9.1f}{run.cpu_ms(u.worker):9.1f}"
            f"{run.cpu_ms(u.database):9.1f}{run.cpu_ms(u.simulator):9.1f}{others:9.0%}"
            f"{drained:>15}"
        )
        if others > QUIET:
            print(f"  WARNING: other processes took {others:.0%} of the CPUs during {name}")


def judge(args: argparse.Namespace, runs: dict[str, Run]) -> bool:
    """Print unexpected answers and failed checks; True if the run was clean."""
    clean = True
    for name, run in runs.items():
        for endpoint, tally in run.tallies.items():
            if tally.unexpected(endpoint):
                codes = dict(tally.statuses)
                print(f"UNEXPECTED {name} {endpoint}: {codes}, {tally.socket_errors} socket errors")
                clean = False
        if not run.checks_ok():
            print(
                f"CHECK FAILED {name}: {run.created_rows} created rows for "
                f"{run.tallies['create'].statuses[201]} 201s, {run.closed_notifications} applied "
                f"notifications for {run.tallies['notify'].statuses[200]} 200s"
                + (
                    ""
                    if run.drained
                    else f"; inbox NOT drained {args.drain_timeout} s after the load"
                )
            )
            clean = False
    if clean:
        print("clean run: every answer expected, every create stored, every notification applied")
    return clean


def run(args: argparse.Namespace, work: Path) -> bool:
    """Set up, measure each server in turn, report; True if the run was clean."""
    env = base_env(args, work)
    DATABASE.create(env)
    runs = {name: measure(name, env, work, args) for name in args.servers}
    print_report(args, runs)
    return judge(args, runs)


def main(argv: list[str]) -> int:
    """Run the benchmark; always stop the servers, keep or drop the database as asked."""
    args = parse_args(argv)
    return run_benchmark("mixed_load", DATABASE, lambda work: run(args, work), drop=args.drop)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
