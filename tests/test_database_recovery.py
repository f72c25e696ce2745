"""The service's pooled database connections survive a PostgreSQL restart."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from benchmarks.common import sql
from drills.harness import Cluster
from tests.conftest import app_config
from tiketq import create_app
from tiketq.extensions import db


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A private PostgreSQL cluster that the test may restart without harming anything else."""
    root = Path(tempfile.mkdtemp(prefix="recovery."))
    running = Cluster(root)
    try:
        running.create()
        yield running
    finally:
        running.destroy()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.timeout(180)
def test_the_first_query_after_a_database_restart_succeeds(cluster: Cluster) -> None:
    app = create_app(app_config(SQLALCHEMY_DATABASE_URI=cluster.url))
    with app.app_context():
        assert db.session.scalar(sa.text("SELECT 1")) == 1
        # Back to the pool, where it outlives the server it was connected to.
        db.session.remove()
        cluster.restart("fast")
        try:
            assert db.session.scalar(sa.text("SELECT 1")) == 1
        finally:
            db.session.remove()
            db.engine.dispose()


@pytest.mark.timeout(180)
def test_a_restart_before_the_request_ends_leaves_its_answer_standing(cluster: Cluster) -> None:
    app = create_app(app_config(SQLALCHEMY_DATABASE_URI=cluster.url))
    context = app.app_context()
    context.push()
    try:
        # A read after the last commit leaves a transaction open until the request ends.
        assert db.session.scalar(sa.text("SELECT 1")) == 1
        cluster.restart("immediate")
    finally:
        context.pop()
    with app.app_context():
        assert db.session.scalar(sa.text("SELECT 1")) == 1
        db.engine.dispose()


def _pings(app, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every ping of a pooled connection the app's engine makes."""
    with app.app_context():
        dialect = db.engine.dialect
    pings: list[object] = []
    original = dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return original(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return pings


@pytest.mark.timeout(180)
def test_a_live_pooled_connection_is_used_without_a_ping(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(app_config(SQLALCHEMY_DATABASE_URI=cluster.url))
    pings = _pings(app, monkeypatch)
    with app.app_context():
        try:
            for _ in range(3):
                assert db.session.scalar(sa.text("SELECT 1")) == 1
                db.session.commit()
            assert pings == []
        finally:
            db.session.remove()
            db.engine.dispose()


@pytest.mark.timeout(180)
def test_a_pooled_connection_the_server_ended_is_replaced_before_use(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(app_config(SQLALCHEMY_DATABASE_URI=cluster.url))
    pings = _pings(app, monkeypatch)
    with app.app_context():
        try:
            first = db.session.scalar(sa.text("SELECT pg_backend_pid()"))
            db.session.remove()
            # As an administrator or an idle timeout would: only this one connection goes (the
            # timeout waits until its backend has exited).
            sql(cluster.dsn, "SELECT pg_terminate_backend(%(pid)s, 5000)", {"pid": first})
            second = db.session.scalar(sa.text("SELECT pg_backend_pid()"))
            assert second != first
            assert len(pings) == 1
        finally:
            db.session.remove()
            db.engine.dispose()
