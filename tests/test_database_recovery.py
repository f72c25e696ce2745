"""The service's pooled database connections survive a PostgreSQL restart."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

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
