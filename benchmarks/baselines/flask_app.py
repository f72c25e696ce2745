"""Bare Flask + psycopg2 baseline of the service's four hot endpoints, no ORM, no rules.

Serve it like the service, from the project root: `gunicorn --config gunicorn.conf.py
benchmarks.baselines.flask_app:app`. Reads DATABASE_URL, MIDTRANS_SERVER_KEY, MIDTRANS_BASE_URL,
STATUS_REFRESH_SECONDS and GUNICORN_THREADS.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, jsonify, request
from psycopg2.extensions import connection as Connection
from psycopg2.pool import ThreadedConnectionPool

from benchmarks.baselines import work
from benchmarks.baselines.statements import SEARCH_PATH, pyformat

app = Flask(__name__)
_pool: ThreadedConnectionPool | None = None
_pool_lock = threading.Lock()


class PsycopgDatabase:
    """work.Database over one pooled psycopg2 connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def row(self, statement: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """Run a statement; its first row as a dict, if it returns rows."""
        with self.conn.cursor() as cur:
            cur.execute(pyformat(statement), params)
            if cur.description is None:
                return None
            found = cur.fetchone()
            names = [column.name for column in cur.description]
            return None if found is None else dict(zip(names, found, strict=True))

    def commit(self) -> None:
        """Commit the transaction."""
        self.conn.commit()

    def rollback(self) -> None:
        """Roll the transaction back."""
        self.conn.rollback()


def _connections() -> ThreadedConnectionPool:
    """The worker's pool, opened on first use: gunicorn imports this module before forking."""
    global _pool
    with _pool_lock:
        if _pool is None:
            dsn = os.environ["DATABASE_URL"].replace("postgresql+psycopg2://", "postgresql://")
            # One connection per gunicorn thread, all kept open: psycopg2 closes any connection
            # returned beyond minconn.
            size = int(os.environ.get("GUNICORN_THREADS", "4"))
            _pool = ThreadedConnectionPool(size, size, dsn, options=SEARCH_PATH)
        return _pool


@contextlib.contextmanager
def database() -> Iterator[PsycopgDatabase]:
    """A pooled connection for one request; whatever it left open is rolled back."""
    pool = _connections()
    conn = pool.getconn()
    try:
        yield PsycopgDatabase(conn)
    finally:
        conn.rollback()
        pool.putconn(conn)


def _answer(answer: work.Answer) -> tuple[Response, int]:
    status, body = answer
    return jsonify(body), status


@app.get("/health")
def health() -> Response:
    """Liveness, for the benchmark to wait on."""
    return jsonify(status="ok")


@app.post("/payments")
def create_payment() -> tuple[Response, int]:
    """Open a payment and get its Snap token."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(detail="request body must be a JSON object"), 400
    with database() as db:
        return _answer(work.create(db, body))


@app.get("/payments/<payment_id>")
def get_payment(payment_id: str) -> tuple[Response, int]:
    """Read one payment."""
    with database() as db:
        return _answer(work.read(db, payment_id))


@app.get("/payments/<payment_id>/status")
def get_status(payment_id: str) -> tuple[Response, int]:
    """Read one payment's status, refreshed from Midtrans at most every few seconds."""
    with database() as db:
        return _answer(work.status(db, payment_id))


@app.post("/payments/webhook")
def notification() -> tuple[Response, int]:
    """Store a Midtrans notification, ask Midtrans about the order and apply its answer."""
    with database() as db:
        return _answer(work.webhook(db, request.get_data(cache=False)))
