"""Each documented database setting migrates and serves; one that cannot work says so in a line."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from benchmarks.common import free_port, sql
from drills.harness import Cluster

# Each test runs flask and gunicorn in subprocesses against a PostgreSQL cluster of its own.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Generous for a busy 2-core machine; a quiet one migrates, or is serving, in a few seconds.
COMMAND_SECONDS = 120
READY_SECONDS = 60
STOP_SECONDS = 30
# Every role but the admin logs in with a password over TCP: under trust auth any password
# would do, and a form that lost the password on the way would pass unnoticed.
PG_HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""
# In the URL and the POSTGRES_PASSWORD forms alike: characters a URL must quote.
PASSWORD_CHARACTERS = "p@ss:w/rd%?#"
# Nothing listens on port 1: a connection there is refused at once.
NOBODY = "127.0.0.1:1"
# Put in the failing settings below; it must never be printed.
LEAKED = "hunter2"
# The tables the first and the last migrations create.
MIGRATED = {"alembic_version", "payments", "notifications", "worker_heartbeats"}


@dataclass
class OwnedDatabase:
    """A fresh database owned by a role of its own, which logs in with a password."""

    host: str
    port: int
    user: str
    password: str
    name: str
    # The server's superuser, connected to this database: to look inside it.
    admin_dsn: str

    def url(self, drivername: str) -> str:
        """Its URL with this scheme, quoted as a URL must be."""
        url = sa.URL.create(drivername, self.user, self.password, self.host, self.port, self.name)
        return url.render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def server() -> Iterator[Cluster]:
    """A private PostgreSQL cluster that checks passwords, on a port that is not the default."""
    root = Path(tempfile.mkdtemp(prefix="startup."))
    cluster = Cluster(root)
    try:
        cluster.create()
        (cluster.data / "pg_hba.conf").write_text(PG_HBA)
        cluster.restart()
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database(server: Cluster) -> Iterator[OwnedDatabase]:
    """A database and its owner made for one test (named with the pid), dropped after it."""
    name = f"tiketq_startup_{os.getpid()}_{secrets.token_hex(4)}"
    password = PASSWORD_CHARACTERS + secrets.token_hex(8)
    sql(server.dsn, f'CREATE ROLE "{name}" LOGIN PASSWORD %(password)s', {"password": password})
    sql(server.dsn, f'CREATE DATABASE "{name}" OWNER "{name}"')
    admin_dsn = f"postgresql://postgres@127.0.0.1:{server.port}/{name}"
    try:
        yield OwnedDatabase("127.0.0.1", server.port, name, password, name, admin_dsn)
    finally:
        sql(server.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        sql(server.dsn, f'DROP ROLE IF EXISTS "{name}"')


def clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """PATH and HOME from the runner, then only these settings."""
    # No MIDTRANS_* key, so the in-app simulator is used; none of the runner's database settings.
    inherited = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    return {
        **inherited,
        # Both are otherwise kept in instance/, shared with every other run on this checkout.
        "MIDTRANS_SIMULATOR_STATE": str(tmp_path / "simulator.sqlite3"),
        "SECRET_KEY": "startup-test",
        **settings,
    }


def flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`flask --app wsgi ARGS` from the project root, as `make run` and compose call it."""
    return subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
    )


def gunicorn_env(env: dict[str, str], port: int) -> dict[str, str]:
    """The environment for gunicorn.conf.py with one worker on this loopback port."""
    return {**env, "PORT": str(port), "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1"}


def gunicorn_command() -> list[str]:
    """The Dockerfile's command."""
    return [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"]


def wait_for_health(server: subprocess.Popen[str], url: str, log: Path) -> None:
    """Poll /health until it answers 200; fail if gunicorn exits or READY_SECONDS pass first."""
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            if requests.get(f"{url}/health", timeout=5).status_code == 200:
                return
        # Refused before gunicorn listens; a timeout while its worker still boots.
        except (requests.ConnectionError, requests.Timeout):
            pass
        assert server.poll() is None, f"gunicorn exited ({server.returncode}):\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{url}/health never answered:\n{log.read_text()}"
        # A short wait that ends at once if gunicorn exits.
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(0.2)


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[str]:
    """gunicorn serving the app until /health answers; yields its URL; stops it on SIGTERM."""
    port = free_port()
    with log.open("w") as out:
        # A session of its own, so that a stuck gunicorn can be killed with its worker.
        server = subprocess.Popen(
            gunicorn_command(),
            cwd=ROOT,
            env=gunicorn_env(env, port),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(server, url, log)
        yield url
        server.terminate()
        assert server.wait(STOP_SECONDS) == 0, log.read_text()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(STOP_SECONDS)


def postgresql_url(database: OwnedDatabase, tmp_path: Path) -> dict[str, str]:
    """DATABASE_URL=postgresql://: SQLAlchemy 2.1 alone would pick psycopg 3."""
    return {"DATABASE_URL": database.url("postgresql")}


def postgres_url(database: OwnedDatabase, tmp_path: Path) -> dict[str, str]:
    """DATABASE_URL=postgres://, as Heroku-style platforms give it."""
    return {"DATABASE_URL": database.url("postgres")}


def psycopg2_url(database: OwnedDatabase, tmp_path: Path) -> dict[str, str]:
    """DATABASE_URL=postgresql+psycopg2://, naming the installed driver."""
    return {"DATABASE_URL": database.url("postgresql+psycopg2")}


def database_url_file(database: OwnedDatabase, tmp_path: Path) -> dict[str, str]:
    """DATABASE_URL_FILE, as a Docker secret with its trailing newline."""
    path = tmp_path / "database_url"
    path.write_text(database.url("postgresql") + "\n")
    return {"DATABASE_URL_FILE": str(path)}


def postgres_parts(database: OwnedDatabase, tmp_path: Path) -> dict[str, str]:
    """POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB."""
    return {
        "POSTGRES_HOST": database.host,
        "POSTGRES_PORT": str(database.port),
        "POSTGRES_USER": database.user,
        "POSTGRES_PASSWORD": database.password,
        "POSTGRES_DB": database.name,
    }


def postgres_parts_from_files(database: OwnedDatabase, tmp_path: Path) -> dict[str, str]:
    """POSTGRES_USER_FILE and POSTGRES_PASSWORD_FILE, as docker-compose.yml passes them."""
    user, password = tmp_path / "db_user", tmp_path / "db_password"
    user.write_text(database.user + "\n")
    password.write_text(database.password + "\n")
    return {
        "POSTGRES_HOST": database.host,
        "POSTGRES_PORT": str(database.port),
        "POSTGRES_USER_FILE": str(user),
        "POSTGRES_PASSWORD_FILE": str(password),
        "POSTGRES_DB": database.name,
    }


def service_tables(database: OwnedDatabase) -> dict[str, str]:
    """The tables in the service's schema (DATABASE_SCHEMA's default), and who owns each."""
    rows = sql(
        database.admin_dsn,
        "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'payment'",
        fetch=True,
    )
    return dict(rows)


@pytest.mark.timeout(COMMAND_SECONDS + READY_SECONDS + STOP_SECONDS + 60)
@pytest.mark.parametrize(
    "form",
    [
        postgresql_url,
        postgres_url,
        psycopg2_url,
        database_url_file,
        postgres_parts,
        postgres_parts_from_files,
    ],
)
def test_each_database_setting_migrates_and_serves(
    form: Callable[[OwnedDatabase, Path], dict[str, str]], database: OwnedDatabase, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, **form(database, tmp_path))
    upgrade = flask(env, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    # In this database, made by its own role: the form carried host, port, user, password, name.
    tables = service_tables(database)
    assert MIGRATED <= set(tables), tables
    assert set(tables.values()) == {database.user}, tables
    with serving(env, tmp_path / "gunicorn.log") as url:
        assert requests.get(f"{url}/health", timeout=5).json()["status"] == "ok"
        ready = requests.get(f"{url}/health/ready", timeout=5)
        # 200 only when the database answers and is migrated to head.
        assert ready.status_code == 200, ready.text
        assert ready.json()["database"] == "reachable"


def assert_refused(done: subprocess.CompletedProcess[str], *says: str) -> str:
    """Exited non-zero with one line on stderr, saying all of `says`; the line."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0, done.stdout + done.stderr
    assert len(lines) == 1, done.stderr
    assert all(part in lines[0] for part in says), lines[0]
    assert "No such command" not in done.stdout + done.stderr
    assert LEAKED not in done.stdout + done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        pytest.param(
            {"DATABASE_URL": f"mysql://x:{LEAKED}@127.0.0.1/db"},
            ("DATABASE_URL", "MySQLdb", "not installed", "postgresql://"),
            id="driver-not-installed",
        ),
        pytest.param(
            {"DATABASE_URL": f"postgresql+psycopg://postgres:{LEAKED}@127.0.0.1/postgres"},
            ("DATABASE_URL", "'psycopg'", "not installed", "postgresql://"),
            id="psycopg-3-not-installed",
        ),
        pytest.param(
            {"DATABASE_URL": f"postgres ql://postgres:{LEAKED}@127.0.0.1/postgres"},
            ("DATABASE_URL", "postgresql://"),
            id="not-a-url",
        ),
        pytest.param(
            {"DATABASE_URL": f"postgresql://postgres:{LEAKED}@127.0.0.1:five/postgres"},
            ("DATABASE_URL", "five", "postgresql://"),
            id="port-not-a-number-in-the-url",
        ),
        pytest.param(
            {"DATABASE_URL": f"nosuchdb://postgres:{LEAKED}@127.0.0.1/postgres"},
            ("DATABASE_URL", "nosuchdb", "postgresql://"),
            id="unknown-database-kind",
        ),
        pytest.param(
            {"DATABASE_URL": f"postgresql://postgres:{LEAKED}@{NOBODY}/nothing"},
            ("DATABASE_URL", NOBODY, "Connection refused", "running"),
            id="unreachable-url",
        ),
        pytest.param(
            {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "1", "POSTGRES_PASSWORD": LEAKED},
            ("POSTGRES_HOST", "POSTGRES_PORT", NOBODY, "Connection refused", "running"),
            id="unreachable-parts",
        ),
        pytest.param(
            {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "five"},
            ("POSTGRES_PORT", "five"),
            id="port-not-a-number-in-the-parts",
        ),
    ],
)
def test_a_database_setting_that_cannot_work_stops_the_upgrade_with_one_line(
    settings: dict[str, str], says: tuple[str, ...], tmp_path: Path
) -> None:
    assert_refused(flask(clean_env(tmp_path, **settings), "db", "upgrade"), *says)


def test_a_wrong_password_stops_the_upgrade_with_one_line(
    database: OwnedDatabase, tmp_path: Path
) -> None:
    settings = {**postgres_parts(database, tmp_path), "POSTGRES_PASSWORD": LEAKED}
    upgrade = flask(clean_env(tmp_path, **settings), "db", "upgrade")
    assert_refused(upgrade, "POSTGRES_PASSWORD", "password authentication failed")
    assert service_tables(database) == {}


def test_the_worker_and_gunicorn_stop_with_the_same_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path, DATABASE_URL=f"mysql://x:{LEAKED}@127.0.0.1/db")
    line = assert_refused(flask(env, "db", "upgrade"), "DATABASE_URL")
    assert assert_refused(flask(env, "payments", "worker"), "DATABASE_URL") == line
    # gunicorn stops (instead of booting the worker again and again) and no traceback is logged.
    served = subprocess.run(
        gunicorn_command(),
        cwd=ROOT,
        env=gunicorn_env(env, free_port()),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=READY_SECONDS,
    )
    assert served.returncode != 0, served.stdout + served.stderr
    assert line in served.stderr.splitlines(), served.stderr
    assert "Traceback" not in served.stdout + served.stderr
    assert LEAKED not in served.stdout + served.stderr
