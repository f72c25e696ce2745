"""The real stack for a drill, on loopback: its own PostgreSQL, the simulator, gunicorn, workers.

Each drill gets a throwaway PostgreSQL cluster so that restarting or killing it harms nothing else
on the machine (the test suite's database included).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from benchmarks.common import BIN, ROOT, SetupError, free_port, sql, started, stop
from drills.report import Check

# Inbox rows a worker still has to look at: stored and waiting (also after Midtrans failed to
# answer), failed with a retry planned, or about an order whose payment exists by now.
INBOX_WAITING = """
SELECT count(*) FILTER (WHERE n.outcome = 'received'),
       count(*) FILTER (WHERE n.outcome = 'failed' AND n.next_attempt_at IS NOT NULL),
       count(*) FILTER (WHERE n.outcome = 'unknown_order' AND EXISTS (
           SELECT 1 FROM payments p WHERE p.gateway_order_id = n.order_id))
FROM notifications n
WHERE n.outcome IN ('received', 'failed', 'unknown_order')
"""
# Rows refused at the door: answered 4xx, never applied.
REFUSED = ("bad_signature", "status_mismatch", "malformed")
# Seconds from a stored notification to the worker's round that applied it.
ARRIVAL_TO_APPLIED = """
WITH waited AS (
    SELECT extract(epoch FROM applied_at - received_at)::float8 AS s FROM notifications
    WHERE applied_at IS NOT NULL AND outcome = ANY(%(outcomes)s)
)
SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY s),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s), max(s)
FROM waited
"""
# The worker's inbox listener: the session that ran LISTEN and sits idle on it.
LISTENERS = """
SELECT application_name, count(*) FROM pg_stat_activity
WHERE query = 'LISTEN tiketq_inbox' AND state = 'idle' GROUP BY application_name
"""

SERVER_KEY = "SB-Mid-server-DRILL"
# Midtrans waits this long for the notification URL's answer (protocol notes, section 4.4).
MIDTRANS_NOTIFICATION_TIMEOUT = 15.0
CLIENT_KEY = "SB-Mid-client-DRILL"
JWT_SECRET = "drill-jwt-secret"
EVENT_SECRET = "drill-event-secret"


def _postgres_bin() -> Path:
    """The newest PostgreSQL server binaries Debian installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        raise SetupError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    return found[-1].parent


class Cluster:
    """A private PostgreSQL cluster on a free loopback port, run as the postgres user."""

    def __init__(self, root: Path) -> None:
        self.data = root / "pgdata"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.bin = _postgres_bin()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """The SQLAlchemy URL the service connects with."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=timeout, cwd="/"
        )
        if done.returncode != 0:
            raise SetupError(f"{Path(args[0]).name} failed: {done.stdout}{done.stderr}")

    def create(self) -> None:
        """initdb with trust auth, then start."""
        for path in (self.data.parent,):
            if self._owner:
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        self.start()

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run(
            str(self.bin / "pg_ctl"), action, "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "60", *extra,
        )  # fmt: skip

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: fast (sessions rolled back) or immediate (a crash)."""
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast", down_seconds: float = 0.0) -> None:
        """Stop the server, stay down for a while, start it again."""
        self.stop(mode)
        if down_seconds:
            threading.Event().wait(down_seconds)
        self.start()

    def destroy(self) -> None:
        """Stop the server if it runs; its files go with the drill's directory."""
        with contextlib.suppress(SetupError, subprocess.TimeoutExpired):
            self.stop("immediate")


@dataclass
class Received:
    """One request the receiver was sent."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Stands in for the transaction service and an event subscriber; records every request."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Seconds each request is held before its answer, so that a drill finds deliveries in flight.
    delay_seconds: float = 0.0

    def event_ids(self) -> list[str]:
        """Subscriber event ids in arrival order, repeats included."""
        with self.lock:
            return [r.headers.get("X-TiketQ-Event-Id", "") for r in self.received
                    if r.path.startswith("/events")]  # fmt: skip

    def confirmations(self) -> list[str]:
        """Order ids the transaction service was asked to confirm, repeats included."""
        with self.lock:
            return [r.path.split("/")[-2] for r in self.received
                    if r.path.startswith("/transactions/")]  # fmt: skip


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    """Run a Receiver on a free loopback port that answers every POST with 200."""
    record = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with record.lock:
                record.received.append(Received(self.path, dict(self.headers), body))
            if record.delay_seconds:
                time.sleep(record.delay_seconds)
            # A sender killed while we waited is no error of the receiver's.
            with contextlib.suppress(ConnectionError):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the drill reports what matters."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    record.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Stack:
    """The running pieces of one drill and how to reach them."""

    root: Path
    cluster: Cluster
    env: dict[str, str]
    service_url: str
    simulator_url: str
    receiver: Receiver
    workers: list[subprocess.Popen] = field(default_factory=list)

    def start_worker(self, **env: str) -> subprocess.Popen:
        """Start one more `flask payments worker`, logging to the drill's directory.

        Its database sessions are named drill-worker-<n> (PGAPPNAME) unless `env` names them.
        """
        number = len(self.workers)
        env = {"PGAPPNAME": f"drill-worker-{number}", **env}
        # The worker keeps its own copy of the file; ours is closed at once.
        with (self.root / f"worker{number}.log").open("w") as log:
            worker = subprocess.Popen(
                [str(BIN / "flask"), "--app", "wsgi", "payments", "worker"],
                cwd=ROOT, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.workers.append(worker)
        return worker

    def worker_logs(self) -> str:
        """Everything the drill's workers logged so far."""
        return "".join(
            path.read_text(errors="replace") for path in sorted(self.root.glob("worker*.log"))
        )

    def listeners(self) -> dict[str, int]:
        """Inbox listeners (LISTEN tiketq_inbox sessions) by application name."""
        return dict(self.query(LISTENERS))

    def await_listeners(self, names: set[str], timeout: float = 30.0) -> bool:
        """Wait until each named worker listens for new notifications."""
        return wait_until(lambda: names <= set(self.listeners()), timeout, interval=0.2)

    def inbox_waiting(self) -> tuple[int, int, int]:
        """Rows a worker still has to look at: (received, failed to retry, unknown now known)."""
        received, failed, known = self.query(INBOX_WAITING)[0]
        return received, failed, known

    def drain_inbox(self, timeout: float) -> bool:
        """Wait until the workers applied every stored notification (retries included)."""
        return wait_until(lambda: not any(self.inbox_waiting()), timeout)

    def inbox_check(self, drained: bool) -> Check:
        """Nothing left waiting in the inbox, nothing given up on (failed), nothing lost."""
        received, retrying, known = self.inbox_waiting()
        (given_up,) = self.query(
            "SELECT count(*) FROM notifications"
            " WHERE outcome = 'failed' AND next_attempt_at IS NULL"
        )[0]
        return Check(
            drained and not (received or retrying or known or given_up),
            f"inbox drained: {received} received, {retrying} failed awaiting a retry, {known} "
            f"unknown_order now known, {given_up} failed for good",
        )

    def inbox_outcomes(self) -> dict[str, int]:
        """Stored notifications by outcome."""
        return dict(self.query("SELECT outcome, count(*) FROM notifications GROUP BY outcome"))

    def arrival_to_applied(self, outcomes: tuple[str, ...] = ("applied",)) -> str:
        """p50/p95/max seconds from notifications.received_at to applied_at, as printed."""
        count, p50, p95, most = self.query(ARRIVAL_TO_APPLIED, {"outcomes": list(outcomes)})[0]
        if not count:
            return "none applied"
        return f"p50 {p50:.2f} s, p95 {p95:.2f} s, max {most:.2f} s over {count} rows"

    def status_calls(self) -> dict[str, int]:
        """Core status calls the simulator answered, by the id in their path."""
        answer = self.control("GET", "/calls?operation=core.status")
        assert isinstance(answer, dict)
        return {call["key"]: call["count"] for call in answer["calls"]}

    def audit(self) -> Check:
        """Run `flask payments audit` against the drill's database; its first violations."""
        done = subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", "payments", "audit"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        lines = done.stdout.strip().splitlines() or ["? violation(s)"]
        if done.returncode not in (0, 1) or not lines[-1].endswith("violation(s)"):
            raise SetupError(f"audit failed ({done.returncode}): {done.stderr[-2000:]}")
        detail = "; ".join(lines[:3]) if done.returncode else ""
        return Check(
            done.returncode == 0, f"audit: {lines[-1]}" + (f": {detail}" if detail else "")
        )

    def simulator(self, method: str, path: str, body: object | None = None) -> object:
        """Call the simulator's control API; return its JSON answer."""
        return call(method, f"{self.simulator_url}/control{path}", body)[1]

    def control(self, method: str, path: str, body: object | None = None) -> object:
        """Call the simulator's control API and insist that it agreed; return its JSON answer."""
        status, answer = call(method, f"{self.simulator_url}/control{path}", body, timeout=60)
        if status >= 300:
            raise SetupError(f"simulator refused {method} {path}: {status} {answer}")
        return answer

    def drain_notifications(self, timeout: float) -> bool:
        """Wait until no simulator notification is due any more, retries included."""
        deadline = time.monotonic() + timeout
        while True:
            # The simulator waits at most a minute per call.
            wait = min(60.0, max(0.0, deadline - time.monotonic()))
            status, _ = call("POST", f"{self.simulator_url}/control/notifications/drain",
                             {"timeout": wait}, timeout=wait + 60)  # fmt: skip
            if status == 200:
                return True
            if time.monotonic() >= deadline:
                return False

    def query(self, statement: str, params: dict | None = None) -> list:
        """The rows of one read against the drill's database."""
        return sql(self.cluster.dsn, statement, params, fetch=True)


def call(
    method: str, url: str, body: object | None = None, *, headers: dict | None = None,
    timeout: float = 30,
) -> tuple[int, object]:  # fmt: skip
    """One JSON request; (status, parsed body or text), HTTP errors included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll condition until it holds or timeout seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def new_payment(order_id: str, amount: int, payment_method: str | None = None) -> dict:
    """A `POST /payments` body for an order of `amount` rupiah, as the transaction service sends."""
    body: dict = {
        "order_id": order_id,
        "amount": amount,
        "customer_details": {"email": "drill@example.co.id", "first_name": "Drill"},
        "item_details": [{"id": order_id, "name": "CGK - DPS", "price": amount, "quantity": 1}],
    }
    if payment_method:
        body["payment_method"] = payment_method
    return body


@contextlib.contextmanager
def stack(
    *, workers: int = 1, time_scale: float = 0.001, gunicorn_workers: int = 2,
    gunicorn_threads: int = 4, worker_interval: float = 0.5, keep: bool = False,
    **extra_env: str,
) -> Iterator[Stack]:  # fmt: skip
    """Bring up a private PostgreSQL, the simulator, the service under gunicorn and workers."""
    root = Path(tempfile.mkdtemp(prefix="drill."))
    cluster = Cluster(root)
    try:
        cluster.create()
        service_port, simulator_port = free_port(), free_port()
        service_url = f"http://127.0.0.1:{service_port}"
        simulator_url = f"http://127.0.0.1:{simulator_port}"
        with receiver() as record:
            env = {
                **os.environ,
                "DATABASE_URL": cluster.url,
                "MIDTRANS_SERVER_KEY": SERVER_KEY,
                "MIDTRANS_CLIENT_KEY": CLIENT_KEY,
                "MIDTRANS_SIMULATOR": "true",
                "MIDTRANS_BASE_URL": simulator_url,
                "TRANSACTION_SERVICE_URL": record.url,
                "JWT_SECRET": JWT_SECRET,
                "EVENT_SUBSCRIBER_URLS": f"{record.url}/events",
                "EVENT_SIGNING_SECRET": EVENT_SECRET,
                "WORKER_INTERVAL": str(worker_interval),
                "PROMETHEUS_MULTIPROC_DIR": str(root / "prometheus"),
                "SECRET_KEY": "drill-secret-key",
                "GUNICORN_BIND": f"127.0.0.1:{service_port}",
                "GUNICORN_WORKERS": str(gunicorn_workers),
                "GUNICORN_THREADS": str(gunicorn_threads),
                "LOG_LEVEL": "WARNING",
                **extra_env,
            }
            migrate = subprocess.run(
                [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            if migrate.returncode != 0:
                raise SetupError(f"migrations failed:\n{migrate.stderr[-2000:]}")
            simulator_command = [
                str(BIN / "python"), "-m", "midtrans_simulator", "--port",
                str(simulator_port), "--server-key", SERVER_KEY, "--state",
                str(root / "simulator.sqlite3"), "--notification-url",
                f"{service_url}/payments/webhook", "--time-scale", str(time_scale),
                # Retries come fast, but an answer is awaited as long as Midtrans waits.
                "--notification-timeout", str(MIDTRANS_NOTIFICATION_TIMEOUT),
            ]  # fmt: skip
            gunicorn = [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"]
            with (
                started(simulator_command, env, root / "simulator.log",
                        f"{simulator_url}/control/transactions"),
                started(gunicorn, env, root / "service.log", f"{service_url}/health"),
            ):  # fmt: skip
                running = Stack(root, cluster, env, service_url, simulator_url, record)
                try:
                    for _ in range(workers):
                        running.start_worker()
                    # Each worker applies the inbox as soon as PostgreSQL notifies it.
                    names = {f"drill-worker-{n}" for n in range(workers)}
                    if not running.await_listeners(names):
                        raise SetupError(f"workers not listening: {running.listeners()}")
                    yield running
                finally:
                    for worker in running.workers:
                        stop(worker)
    finally:
        cluster.destroy()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
