"""What every benchmark and drill needs: free ports, servers run and stopped, a quiet machine."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from tiketq.config import DEFAULT_DATABASE_SCHEMA
from tiketq.extensions import schema_options

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

# Other work on the machine skews a run: above this share of all CPUs, wait for it, then warn.
QUIET = 0.10


# Notifications the service's worker has still to apply: stored, or failed and to be retried.
WAITING = "SELECT count(*) FROM notifications WHERE outcome IN ('received', 'failed')"


class SetupError(Exception):
    """The benchmark could not be set up or run; nothing was measured."""


def sql(dsn: str, statement: str, params: dict | None = None, *, fetch: bool = False) -> list:
    """Run one statement (or a script) in autocommit; return the rows when asked."""
    # Bounded: a lock held by a stray request fails the run instead of hanging it.
    # The service's tables are in its schema, as its own connections see them.
    options = schema_options(
        DEFAULT_DATABASE_SCHEMA, "-c lock_timeout=10s -c statement_timeout=120s"
    )
    conn = psycopg2.connect(dsn, connect_timeout=5, options=options)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if fetch else []
    finally:
        conn.close()


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 30.0) -> None:
    """Poll url until it answers 200, the server dies, or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SetupError(f"{server.args[0]} exited with {server.returncode} before answering")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise SetupError(f"{url} did not answer within {timeout:.0f} s")


def stop(server: subprocess.Popen, timeout: float = 30.0) -> None:
    """Stop a server gracefully (in-flight requests finish), then its whole session by force."""
    if server.poll() is not None:
        return
    server.terminate()
    try:
        # The default is longer than gunicorn.conf.py's graceful_timeout.
        server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


@contextlib.contextmanager
def started(
    command: Sequence[str], env: dict[str, str], log: Path, health_url: str
) -> Iterator[subprocess.Popen]:
    """Run a server from the project root until health_url answers; yield it; stop it."""
    with log.open("w") as out:
        # Its own session, so that a stuck server can be killed with all its workers.
        server = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(health_url, server)
        yield server
    finally:
        stop(server)


@contextlib.contextmanager
def served(app: str, env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    """Serve app with gunicorn.conf.py on a free port; yield its URL and session id; stop it."""
    port = free_port()
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"}
    # No worker recycling: max_requests would restart workers mid-run, and the CPU of their
    # database sessions would be lost to the accounting. Logs stay as configured.
    command = [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--max-requests", "0", app]
    url = f"http://127.0.0.1:{port}"
    with started(command, env, log, f"{url}/health") as server:
        yield url, server.pid


def cpu_times() -> tuple[int, int]:
    """The machine's (busy in processes, total) CPU ticks since boot."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:9]]
    # user + nice + system: interrupt time is no process's, and loopback traffic makes plenty.
    return sum(ticks[:3]), sum(ticks)


def busy_share(seconds: float = 1.0) -> float:
    """The share of all CPUs that processes used over the next `seconds`."""
    busy_before, total_before = cpu_times()
    time.sleep(seconds)
    busy_after, total_after = cpu_times()
    return (busy_after - busy_before) / max(1, total_after - total_before)


def wait_quiet(max_wait: int) -> None:
    """Wait, at most max_wait seconds, until other processes leave the CPUs alone."""
    deadline = time.monotonic() + max_wait
    while busy_share() > QUIET and time.monotonic() < deadline:
        pass


TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Process:
    """One process's place and the CPU it used, from /proc/<pid>/stat."""

    pid: int
    parent: int
    session: int
    ticks: int  # user + system, including its reaped children: workers a server replaced

    @property
    def kernel_thread(self) -> bool:
        """A kernel thread (kthreadd's child): on a benchmark, mostly writing back our WAL."""
        return self.parent == 2


def processes() -> Iterator[Process]:
    """Every running process; those that end while being read are skipped."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used = sum(int(x) for x in fields[11:15])
        yield Process(int(name), int(fields[1]), int(fields[3]), used)


def children_ticks() -> int:
    """CPU ticks of this process's reaped children (wrk, load generators)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round((children.ru_utime + children.ru_stime) * TICKS_PER_SECOND)


class BenchDatabase:
    """A benchmark's own database on the local PostgreSQL server, recreated for every run."""

    _BUSY = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = %(db)s AND pid <> pg_backend_pid() AND state <> 'idle'
    """
    # Its sessions and the server's own processes (WAL writer, checkpointer...).
    _BACKENDS = """
    SELECT pid FROM pg_stat_activity WHERE datname = %(db)s OR backend_type <> 'client backend'
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"

    def rows(self, statement: str, params: dict | None = None) -> list:
        """The rows of one statement run against the database."""
        return sql(self.dsn, statement, params, fetch=True)

    def create(self, env: dict[str, str]) -> None:
        """Drop and create the database and migrate it to head with the service's migrations."""
        sql(ADMIN_DSN, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        sql(ADMIN_DSN, f"CREATE DATABASE {self.name}")
        self.migrate(env)

    def migrate(self, env: dict[str, str], timeout: float = 120.0) -> None:
        """`flask db upgrade` to head with the service's migrations."""
        done = subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
            cwd=ROOT,
            env={**env, "DATABASE_URL": self.url},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise SetupError(f"migrations failed on {self.name}:\n{done.stderr[-2000:]}")

    def wait_idle(self, timeout: float = 30.0, settle: float = 1.0) -> None:
        """Wait until no other session has been busy for `settle` seconds.

        When the load stops, servers still answer the requests they had accepted; TRUNCATE
        takes its tables one by one and would deadlock with one of them.
        """
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if self.rows(self._BUSY, {"db": self.name})[0][0]:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return
            time.sleep(0.1)
        raise SetupError(f"sessions on {self.name} still busy after {timeout:.0f} s")

    def reseed(self, seed: str, params: dict) -> None:
        """Run a seed script once the database is idle, then flush dirty pages."""
        self.wait_idle()
        sql(self.dsn, seed, params)
        # A checkpoint now keeps one from landing in the middle of the measured run.
        sql(self.dsn, "CHECKPOINT")

    def backends(self) -> set[int]:
        """Process ids of the database's sessions and of PostgreSQL's own processes."""
        return {pid for (pid,) in self.rows(self._BACKENDS, {"db": self.name})}

    def drop(self) -> None:
        """Drop the database."""
        sql(ADMIN_DSN, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


@contextlib.contextmanager
def worker(database: BenchDatabase, env: dict[str, str], log: Path) -> Iterator[int]:
    """`flask payments worker` in its own session until its first round is done; yield the id."""
    command = [str(BIN / "flask"), "--app", "wsgi", "payments", "worker"]
    with log.open("a") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        # The worker's id is host:pid; its heartbeat comes after its first full round.
        deadline = time.monotonic() + 30
        beat = "SELECT count(*) FROM worker_heartbeats WHERE worker_id LIKE %(id)s"
        while not database.rows(beat, {"id": f"%:{process.pid}"})[0][0]:
            if process.poll() is not None:
                raise SetupError(f"the worker exited with {process.returncode} (log: {log})")
            if time.monotonic() > deadline:
                raise SetupError(f"the worker did not start within 30 s (log: {log})")
            time.sleep(0.1)
        yield process.pid
    finally:
        if process.poll() is None:
            # SIGTERM: it finishes its round and stops.
            process.send_signal(signal.SIGTERM)
        stop(process)


def wait_drained(database: BenchDatabase, timeout: float) -> tuple[float, bool]:
    """Wait until no notification waits to be applied; (time.time() then, whether it did)."""
    conn = psycopg2.connect(
        database.dsn, connect_timeout=5, options=schema_options(DEFAULT_DATABASE_SCHEMA)
    )
    conn.autocommit = True
    deadline = time.monotonic() + timeout
    try:
        with conn.cursor() as cur:
            while True:
                cur.execute(WAITING)
                if cur.fetchone()[0] == 0:
                    return time.time(), True
                if time.monotonic() > deadline:
                    return time.time(), False
                time.sleep(0.05)
    finally:
        conn.close()


def _terminated(signum: int, frame: object) -> None:
    raise SetupError("stopped by SIGTERM")


def run_benchmark(
    name: str, database: BenchDatabase, run: Callable[[Path], bool], *, drop: bool
) -> int:
    """Run a benchmark in a work directory: 0 if it passed, 1 if not, 2 if it could not run.

    The servers are always stopped (SIGTERM unwinds through the blocks that stop them); the
    database is dropped or kept as asked.
    """
    signal.signal(signal.SIGTERM, _terminated)
    work = Path(tempfile.mkdtemp(prefix=f"{name}."))
    try:
        passed = run(work)
    except Exception as exc:  # whatever stopped the measurement, it is not a result
        detail = str(exc) if isinstance(exc, SetupError) else traceback.format_exc()
        print(f"setup error: {detail}\n(server logs in {work})", file=sys.stderr)
        return 2
    finally:
        if drop:
            with contextlib.suppress(psycopg2.Error):
                database.drop()
                print(f"dropped database {database.name}")
        else:
            print(f"kept database {database.name} ({database.dsn}); --drop removes it")
    shutil.rmtree(work)
    return 0 if passed else 1
