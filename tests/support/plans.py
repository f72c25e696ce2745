"""Databases seeded at size, and the tables PostgreSQL's plans read from end to end there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from tests.support.config import app_config
from tests.support.database import drop_database, recreate_database
from tiketq import create_app
from tiketq.extensions import db


@contextmanager
def seeded_app(url: str, seed: str, **config: Any) -> Iterator[Flask]:
    """An app on a database of its own at `url`, migrated and filled by the SQL `seed`."""
    recreate_database(url)
    app = create_app(app_config(SQLALCHEMY_DATABASE_URI=url, **config))
    try:
        with app.app_context():
            upgrade()
            # The raw DBAPI cursor runs the whole multi-statement seed in one round trip.
            raw = db.engine.raw_connection()
            try:
                with raw.cursor() as cursor:
                    cursor.execute(seed)
                raw.commit()
            finally:
                raw.close()
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()
        drop_database(url)


@contextmanager
def selects_sent() -> Iterator[list[tuple[str, Any]]]:
    """The SELECT statements sent through the app's engine inside the block, with parameters."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
        db.session.rollback()


def sequential_scans(statement: str, parameters: Any) -> set[str]:
    """The tables the plan of `statement` reads sequentially."""
    with db.engine.connect() as connection:
        explained = connection.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) {statement}", parameters
        ).scalar_one()
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]
    return {table for node, table in _nodes(plan["Plan"]) if node == "Seq Scan"}


def _nodes(plan: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield plan["Node Type"], plan.get("Relation Name", "")
    for child in plan.get("Plans", []):
        yield from _nodes(child)
