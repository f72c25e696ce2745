"""The webhook's bare minimum for the load benchmark: Flask and raw psycopg2, no ORM, no rules.

It does the database work every notification needs (store it and commit, then lock the payment,
update it, record an event, commit), so the service's throughput can be read against it.
Serve it with gunicorn from the project root: `gunicorn --config gunicorn.conf.py
benchmarks.baseline_app:app`; it reads DATABASE_URL, MIDTRANS_SERVER_KEY and GUNICORN_THREADS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading

from flask import Flask, Response, jsonify, request
from psycopg2.pool import ThreadedConnectionPool

SCHEMA = """
DROP TABLE IF EXISTS baseline_events, baseline_inbox, baseline_payments;
CREATE TABLE baseline_payments (
    id bigserial PRIMARY KEY,
    gateway_order_id varchar(50) NOT NULL UNIQUE,
    amount bigint NOT NULL,
    status varchar(20) NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE baseline_inbox (
    id bigserial PRIMARY KEY,
    raw_body text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE baseline_events (
    id bigserial PRIMARY KEY,
    payment_id bigint NOT NULL REFERENCES baseline_payments (id),
    inbox_id bigint NOT NULL REFERENCES baseline_inbox (id),
    to_status varchar(20) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""

SEED = """
TRUNCATE baseline_events, baseline_inbox, baseline_payments RESTART IDENTITY;
INSERT INTO baseline_payments (gateway_order_id, amount, status, updated_at)
SELECT %(prefix)s || lpad(n::text, 6, '0'), 150000, 'pending', now()
FROM generate_series(1, %(count)s) AS n;
ANALYZE baseline_payments;
"""

app = Flask(__name__)
_pool: ThreadedConnectionPool | None = None
_pool_lock = threading.Lock()


def _connections() -> ThreadedConnectionPool:
    """The worker's pool, opened on first use: gunicorn imports this module after forking."""
    global _pool
    with _pool_lock:
        if _pool is None:
            dsn = os.environ["DATABASE_URL"].replace("postgresql+psycopg2://", "postgresql://")
            # One connection per gunicorn thread, all kept open: psycopg2 closes any connection
            # returned beyond minconn, which would mean a new connection per request.
            size = int(os.environ.get("GUNICORN_THREADS", "4"))
            _pool = ThreadedConnectionPool(size, size, dsn)
        return _pool


def _signed(body: object) -> bool:
    """Check Midtrans's signature_key: SHA-512 of order_id + status_code + gross_amount + key."""
    if not isinstance(body, dict):
        return False
    fields = [body.get(name) for name in ("order_id", "status_code", "gross_amount")]
    given = body.get("signature_key")
    if not all(isinstance(value, str) for value in [*fields, given]):
        return False
    key = os.environ["MIDTRANS_SERVER_KEY"]
    expected = hashlib.sha512(("".join(fields) + key).encode()).hexdigest()
    return hmac.compare_digest(expected, given)


@app.get("/health")
def health() -> Response:
    """Liveness, for the benchmark to wait on."""
    return jsonify(status="ok")


@app.post("/payments/webhook")
def webhook() -> tuple[Response, int]:
    """Store the notification, then apply it to its payment under a row lock."""
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw)
    except ValueError:
        return jsonify(outcome="malformed"), 400
    if not _signed(body):
        return jsonify(outcome="bad_signature"), 403
    status = "success" if body.get("transaction_status") == "settlement" else None
    pool = _connections()
    conn = pool.getconn()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO baseline_inbox (raw_body) VALUES (%s) RETURNING id",
                (raw.decode("utf-8", errors="replace"),),
            )
            (inbox_id,) = cur.fetchone()
            conn.commit()
            cur.execute(
                "SELECT id FROM baseline_payments WHERE gateway_order_id = %s FOR UPDATE",
                (body["order_id"],),
            )
            row = cur.fetchone()
            if row is None:
                conn.commit()
                return jsonify(outcome="unknown_order"), 404
            cur.execute(
                "UPDATE baseline_payments SET status = coalesce(%s, status), updated_at = now() "
                "WHERE id = %s",
                (status, row[0]),
            )
            cur.execute(
                "INSERT INTO baseline_events (payment_id, inbox_id, to_status) "
                "VALUES (%s, %s, coalesce(%s, 'pending'))",
                (row[0], inbox_id, status),
            )
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        pool.putconn(conn)
    return jsonify(outcome="applied", notification_id=inbox_id), 200
