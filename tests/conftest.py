"""Shared fixtures: a migrated PostgreSQL database, the Midtrans simulator over HTTP, the app."""

from __future__ import annotations

import io
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade
from werkzeug.serving import make_server

import midtrans_simulator as simulator
from tiketq import create_app
from tiketq.extensions import db
from tiketq.logs import handler

# A database of this run's own (dropped afterwards), so that parallel runs never collide.
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL",
    f"postgresql+psycopg2://postgres@127.0.0.1:5432/tiketq_test_{os.getpid()}",
)
SERVER_KEY = "SB-Mid-server-TESTKEY"
CLIENT_KEY = "SB-Mid-client-TESTKEY"


@dataclass
class Simulator:
    """The Midtrans simulator running as its own HTTP server, with its control API."""

    url: str

    def control(self, method: str, path: str, json: Any = None) -> requests.Response:
        """Call the simulator's control API."""
        return requests.request(method, f"{self.url}/control{path}", json=json, timeout=5)

    def fault(
        self,
        *,
        delay_seconds: float = 0,
        status: int | None = None,
        body: str | None = None,
        times: int | None = None,
        operations: list[str] | None = None,
    ) -> None:
        """Make Snap and Core misbehave; `operations` (e.g. ["core.status"]) aims at those only."""
        fault = {
            "delay_seconds": delay_seconds,
            "status": status,
            "body": body,
            "times": times,
            "operations": operations,
        }
        self.control("POST", "/faults", fault).raise_for_status()

    def calls(self, operation: str | None = None, key: str | None = None) -> int:
        """How many Snap/Core calls the simulator answered, e.g. ("core.status", order_id)."""
        filters = {
            name: value
            for name, value in (("operation", operation), ("key", key))
            if value is not None
        }
        response = requests.get(f"{self.url}/control/calls", params=filters, timeout=5)
        response.raise_for_status()
        return response.json()["total"]

    def reset_calls(self) -> None:
        """Count Snap/Core calls from zero again."""
        self.control("DELETE", "/calls").raise_for_status()

    def notification(self, order_id: str) -> dict[str, Any]:
        """The signed HTTP notification Midtrans would send now about the order."""
        response = self.control("GET", f"/transactions/{order_id}/notification")
        response.raise_for_status()
        return response.json()

    def pay(self, order_id: str, method: str, outcome: str) -> dict[str, Any]:
        """Act as the traveller choosing a method in Snap, with an outcome."""
        response = self.control(
            "POST", f"/transactions/{order_id}/pay", {"method": method, "outcome": outcome}
        )
        response.raise_for_status()
        return response.json()

    def transaction(self, order_id: str) -> dict[str, Any]:
        """The simulator's record of a transaction."""
        response = self.control("GET", f"/transactions/{order_id}")
        response.raise_for_status()
        return response.json()


def serve_in_thread(app: Flask) -> tuple[str, Any]:
    """Serve a WSGI app on a free loopback port in a daemon thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_port}", server


@pytest.fixture(scope="session")
def midtrans_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """The Midtrans simulator as a separate HTTP server, as the adapter meets it in production."""
    state = tmp_path_factory.mktemp("simulator") / "state.sqlite3"
    url, server = serve_in_thread(
        simulator.create_app(server_key=SERVER_KEY, state_path=str(state))
    )
    yield Simulator(url)
    server.shutdown()


@pytest.fixture(autouse=True)
def _clear_simulator_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    if "midtrans_simulator" not in request.fixturenames:
        yield
        return
    sim: Simulator = request.getfixturevalue("midtrans_simulator")
    # Reset before as well as after: a background worker of an earlier test may still call in.
    sim.reset_calls()
    yield
    sim.control("DELETE", "/faults")
    sim.reset_calls()


def _admin_execute(url: str, *statements: str) -> None:
    admin = sa.create_engine(
        sa.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))
    admin.dispose()


def _recreate_database(url: str) -> None:
    name = sa.make_url(url).database
    _admin_execute(
        url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
    )


def _drop_database(url: str) -> None:
    _admin_execute(url, f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')


def app_config(**overrides: Any) -> dict[str, Any]:
    """Test configuration: PostgreSQL, an external simulator, sandbox keys."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": TEST_DATABASE_URL,
        "MIDTRANS_SERVER_KEY": SERVER_KEY,
        "MIDTRANS_CLIENT_KEY": CLIENT_KEY,
        "MIDTRANS_IS_PRODUCTION": False,
        "MIDTRANS_SIMULATOR": True,
        "MIDTRANS_SIMULATOR_IN_APP": False,
        # The session's app is shared by every test: an open circuit would leak from one test
        # into the next. The breaker's own tests turn it on.
        "MIDTRANS_BREAKER_FAILURES": 0,
        # The Flask test client's host, so that the addresses we hand out open in it.
        "PUBLIC_BASE_URL": "http://localhost",
        **overrides,
    }


@pytest.fixture(scope="session")
def database(midtrans_simulator: Simulator) -> Iterator[str]:
    """This run's own test database, migrated to head, dropped at the end."""
    _recreate_database(TEST_DATABASE_URL)
    migrator = create_app(app_config(MIDTRANS_BASE_URL=midtrans_simulator.url))
    with migrator.app_context():
        upgrade()
        db.engine.dispose()
    yield TEST_DATABASE_URL
    _drop_database(TEST_DATABASE_URL)


@pytest.fixture(scope="session")
def app(database: str, midtrans_simulator: Simulator) -> Iterator[Flask]:
    """The app, talking to the simulator over HTTP; each test runs in a rolled-back transaction."""
    # One connection carries each test's transaction: the worker's threads must not share it.
    app = create_app(app_config(MIDTRANS_BASE_URL=midtrans_simulator.url, WORKER_INBOX_THREADS=1))
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _rollback_after_test(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Run each test that uses the app inside one transaction that is rolled back afterwards.

    Flask-SQLAlchemy 3.1 ignores a session's bind, so the connection replaces the engine in
    db.engines; commits in the code under test become savepoint releases.
    """
    if "app" not in request.fixturenames:
        yield
        return
    app: Flask = request.getfixturevalue("app")
    with app.app_context():
        engines = db.engines
        connection = engines[None].connect()
        transaction = connection.begin()
        monkeypatch.setitem(engines, None, connection)
        original = db.session
        db.session = db._make_scoped_session({"join_transaction_mode": "create_savepoint"})
        try:
            yield
        finally:
            db.session.remove()
            db.session = original
            transaction.rollback()
            connection.close()


@pytest.fixture
def log_text() -> Iterator[Any]:
    """Every log line written while the test runs, through the service's JSON formatter."""
    stream = io.StringIO()
    root = logging.getLogger()
    capture = handler(stream)
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    yield stream.getvalue
    root.removeHandler(capture)
    root.setLevel(previous)


@pytest.fixture
def order_id() -> str:
    """A fresh TiketQ order number; the simulator remembers every order id it has seen."""
    return f"ORD-{uuid.uuid4().hex[:12].upper()}"


@pytest.fixture
def committed(database: str, midtrans_simulator: Simulator) -> Iterator[Any]:
    """Build apps whose commits are real, for tests of locks, concurrency and failures mid-way.

    They share the migrated test database; its rows are truncated afterwards.
    """
    built: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        real = create_app(app_config(MIDTRANS_BASE_URL=midtrans_simulator.url, **overrides))
        built.append(real)
        return real

    yield build
    cleaner = built[0] if built else build()
    with cleaner.app_context():
        db.session.execute(sa.text(f"TRUNCATE {', '.join(db.metadata.tables)} CASCADE"))
        db.session.commit()
    for real in built:
        with real.app_context():
            db.engine.dispose()


@pytest.fixture
def committing_app(committed: Any) -> Flask:
    """One app with real commits."""
    return committed()


# The transaction service's JWT secret in tests whose confirmations are received and decoded.
CONFIRMATION_SECRET = "test-confirmation-secret-of-32-bytes!"


@pytest.fixture
def receiver() -> Iterator[Any]:
    """A local HTTP receiver standing in for the transaction service and a subscriber."""
    from tests.receiver import start_receiver  # it serves itself with serve_in_thread above

    yield from start_receiver()


@pytest.fixture
def worker_app(committed: Any, receiver: Any) -> Flask:
    """An app with real commits whose confirmations and events go to the local receiver."""
    return committed(
        TRANSACTION_SERVICE_URL=receiver.url,
        JWT_SECRET=CONFIRMATION_SECRET,
        EVENT_SUBSCRIBER_URLS=[receiver.url + "/user-service/payment-events"],
        EVENT_SIGNING_SECRET="subscriber-secret",
    )
