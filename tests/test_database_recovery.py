"""The service's pooled database connections survive a PostgreSQL restart."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from benchmarks.common import sql
from drills.harness import Cluster
from tests.support.config import app_config
from tiketq import create_app
from tiketq.extensions import db
from tiketq.wakeup import CHANNEL, Wakeup

# Each test starts and restarts a PostgreSQL cluster of its own.
pytestmark = pytest.mark.slow

# Generous for a busy 2-core machine: each wake-up below comes within a second or so.
WAIT_SECONDS = 60


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


@pytest.fixture
def cluster_app(cluster: Cluster) -> Iterator[Flask]:
    """The service on the private cluster; its pool is closed after the test."""
    service = create_app(app_config(SQLALCHEMY_DATABASE_URI=cluster.url))
    yield service
    with service.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.timeout(180)
def test_the_first_query_after_a_database_restart_succeeds(
    cluster_app: Flask, cluster: Cluster
) -> None:
    with cluster_app.app_context():
        assert db.session.scalar(sa.text("SELECT 1")) == 1
        # Back to the pool, where it outlives the server it was connected to.
        db.session.remove()
        cluster.restart("fast")
        assert db.session.scalar(sa.text("SELECT 1")) == 1


@pytest.mark.timeout(180)
def test_a_restart_before_the_request_ends_leaves_its_answer_standing(
    cluster_app: Flask, cluster: Cluster
) -> None:
    context = cluster_app.app_context()
    context.push()
    try:
        # A read after the last commit leaves a transaction open until the request ends.
        assert db.session.scalar(sa.text("SELECT 1")) == 1
        cluster.restart("immediate")
    finally:
        context.pop()
    with cluster_app.app_context():
        assert db.session.scalar(sa.text("SELECT 1")) == 1


@pytest.fixture
def pings(cluster_app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every ping of a pooled connection the app's engine makes, as the test goes."""
    with cluster_app.app_context():
        dialect = db.engine.dialect
    made: list[object] = []
    original = dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        made.append(dbapi_connection)
        return original(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return made


@pytest.mark.timeout(180)
def test_a_live_pooled_connection_is_used_without_a_ping(
    cluster_app: Flask, pings: list[object]
) -> None:
    with cluster_app.app_context():
        for _ in range(3):
            assert db.session.scalar(sa.text("SELECT 1")) == 1
            db.session.commit()
        assert pings == []


@pytest.mark.timeout(180)
def test_a_pooled_connection_the_server_ended_is_replaced_before_use(
    cluster_app: Flask, cluster: Cluster, pings: list[object]
) -> None:
    with cluster_app.app_context():
        first = db.session.scalar(sa.text("SELECT pg_backend_pid()"))
        db.session.remove()
        # As an administrator or an idle timeout would: only this one connection goes (the
        # timeout waits until its backend has exited).
        sql(cluster.dsn, "SELECT pg_terminate_backend(%(pid)s, 5000)", {"pid": first})
        second = db.session.scalar(sa.text("SELECT pg_backend_pid()"))
        assert second != first
        assert len(pings) == 1


@pytest.mark.timeout(180)
def test_the_worker_listens_again_after_a_database_restart(
    cluster_app: Flask, cluster: Cluster
) -> None:
    with cluster_app.app_context():
        wakeup = Wakeup(db.engine)
        try:
            assert wakeup.wait(WAIT_SECONDS) is True  # a new LISTEN: its caller looks once
            cluster.restart("fast")
            # The listener's server went away: the wait ends, and the next one listens anew.
            assert wakeup.wait(WAIT_SECONDS) is True
            assert wakeup.wait(WAIT_SECONDS) is True
            sql(cluster.dsn, "SELECT pg_notify(%(channel)s, '')", {"channel": CHANNEL})
            assert wakeup.wait(WAIT_SECONDS) is True
        finally:
            wakeup.close()
