"""Shared fixtures: a migrated PostgreSQL database, the Midtrans simulator over HTTP, the app."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade
from flask_sqlalchemy.session import Session
from sqlalchemy import orm

import midtrans_simulator as simulator
from tests.support.config import CONFIRMATION_SECRET, SERVER_KEY, TEST_DATABASE_URL, app_config
from tests.support.database import drop_database, recreate_database
from tests.support.receiver import start_receiver
from tests.support.servers import serve_in_thread
from tests.support.simulator import Simulator
from tiketq import create_app
from tiketq.extensions import db
from tiketq.logs import handler


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
def _fresh_simulator(request: pytest.FixtureRequest) -> Iterator[None]:
    if "midtrans_simulator" not in request.fixturenames:
        yield
        return
    sim: Simulator = request.getfixturevalue("midtrans_simulator")
    # Counted from zero before the test rather than after it: a background worker of an earlier
    # test may still call in.
    sim.reset_calls()
    yield
    if sim.faulted:
        sim.clear_faults()


@pytest.fixture(scope="session")
def database(midtrans_simulator: Simulator) -> Iterator[str]:
    """This run's own test database, migrated to head, dropped at the end."""
    recreate_database(TEST_DATABASE_URL)
    migrator = create_app(app_config(MIDTRANS_BASE_URL=midtrans_simulator.url))
    with migrator.app_context():
        upgrade()
        db.engine.dispose()
    yield TEST_DATABASE_URL
    drop_database(TEST_DATABASE_URL)


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

    Commits in the code under test release savepoints of that transaction instead.
    """
    if "app" not in request.fixturenames:
        yield
        return
    app: Flask = request.getfixturevalue("app")
    with app.app_context():
        connection = db.engine.connect()
        transaction = connection.begin()
        # Flask-SQLAlchemy's Session.get_bind picks from db.engines and never looks at a bind
        # given to the session, so the connection takes the engine's place there (db.engine too).
        monkeypatch.setitem(db.engines, None, connection)
        # Scoped like db.session, one per app context; joining the connection's transaction
        # through a savepoint, so that a rollback in the code under test undoes only its own work.
        session = orm.scoped_session(
            orm.sessionmaker(
                class_=Session, db=db, query_cls=db.Query, join_transaction_mode="create_savepoint"
            ),
            scopefunc=db.session.registry.scopefunc,
        )
        monkeypatch.setattr(db, "session", session)
        try:
            yield
        finally:
            session.remove()
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


@pytest.fixture
def receiver() -> Iterator[Any]:
    """A local HTTP receiver standing in for the transaction service and a subscriber."""
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
