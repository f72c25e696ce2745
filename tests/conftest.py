"""Shared fixtures: a migrated PostgreSQL database, the Midtrans simulator over HTTP, the app."""

from __future__ import annotations

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

from tiketq import create_app
from tiketq.extensions import db
from tiketq.gateway import simulator

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/tiketq_test"
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

    def fault(self, **fault: Any) -> None:
        """Make Snap and Core misbehave (delay_seconds, status, body, times)."""
        self.control("POST", "/faults", fault).raise_for_status()

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
    yield
    if "midtrans_simulator" in request.fixturenames:
        request.getfixturevalue("midtrans_simulator").control("DELETE", "/faults")


def _recreate_database(url: str) -> None:
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


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
        **overrides,
    }


@pytest.fixture(scope="session")
def app(midtrans_simulator: Simulator) -> Iterator[Flask]:
    """The app on a freshly migrated test database, talking to the simulator over HTTP."""
    _recreate_database(TEST_DATABASE_URL)
    app = create_app(app_config(MIDTRANS_BASE_URL=midtrans_simulator.url))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    yield app


@pytest.fixture(autouse=True)
def _rollback_after_test(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Run each test that uses the app inside one transaction that is rolled back afterwards.

    Flask-SQLAlchemy 3.1 ignores a session's bind, so the connection replaces the engine in
    db.engines; commits in the code under test become savepoint releases.
    """
    if "app" not in request.fixturenames or "committing_app" in request.fixturenames:
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
def order_id() -> str:
    """A fresh TiketQ order number; the simulator remembers every order id it has seen."""
    return f"ORD-{uuid.uuid4().hex[:12].upper()}"


@pytest.fixture
def committing_app(app: Flask, midtrans_simulator: Simulator) -> Iterator[Flask]:
    """An app whose commits are real, for tests of locks, concurrency and failures mid-way.

    It shares the migrated test database; its rows are truncated afterwards.
    """
    real = create_app(app_config(MIDTRANS_BASE_URL=midtrans_simulator.url))
    yield real
    with real.app_context():
        db.session.execute(
            sa.text("TRUNCATE payments, payment_events, notifications, outbox CASCADE")
        )
        db.session.commit()
        db.engine.dispose()
