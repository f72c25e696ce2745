"""Every query of the dashboard, search, payment pages, /metrics and the worker's claims uses an
index on a database with a year's history: none reads a big table from end to end."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from tests.support.plans import seeded_app, selects_sent, sequential_scans
from tiketq.gateway import current_gateway
from tiketq.metrics import DatabaseCollector
from tiketq.ops import widgets
from tiketq.outbound import current_outbound
from tiketq.payments import notifications, outbox, queries, reconcile

# One module-wide fixture seeds a year of history before any test runs.
pytestmark = pytest.mark.slow

PLANS_DATABASE_URL = f"postgresql+psycopg2://postgres@127.0.0.1:5432/tiketq_plans_{os.getpid()}"
# The tables that grow with every payment; a sequential scan of any of them grows with it.
GROWING = {"payments", "payment_events", "notifications", "outbox", "deliveries"}
HISTORY = 60_000

# A year of ended payments, then today's few open, flagged and failing ones. Sizes are small
# beside production's, but large enough that the planner's choice is the one it makes there.
SEED = """
INSERT INTO payments (id, order_id, attempt, gateway_order_id, amount, currency, status,
    status_detail, payment_method, payment_type, customer, items, expires_at, paid_at,
    refunded_amount, payment_details, needs_review, next_check_at, checks, last_checked_at,
    request_fingerprint, created_at, updated_at)
SELECT md5('p' || n)::uuid, 'ORD-' || n, 1, 'ORD-' || n, 150000 + n, 'IDR',
    CASE WHEN n % 10 < 7 THEN 'success' WHEN n % 10 < 9 THEN 'expired' ELSE 'failed' END,
    NULL, 'bank_transfer', 'bank_transfer', '{}', '[]', at + interval '1 day',
    CASE WHEN n % 10 < 7 THEN at + interval '5 minutes' END, 0, '{}', false, NULL, 1,
    at + interval '5 minutes', md5('f' || n), at, at + interval '5 minutes'
FROM (SELECT n, now() - interval '2 days' - (n * interval '500 seconds') AS at
      FROM generate_series(1, :history) AS n) AS history;

INSERT INTO payments (id, order_id, attempt, gateway_order_id, amount, currency, status,
    payment_method, customer, items, expires_at, refunded_amount, payment_details,
    needs_review, next_check_at, checks, request_fingerprint, created_at, updated_at)
SELECT md5('t' || n)::uuid, 'TODAY-' || n, 1, 'TODAY-' || n, 250000, 'IDR',
    CASE WHEN n % 4 = 0 THEN 'success' ELSE 'pending' END, 'qris', '{}', '[]',
    now() + interval '1 hour', 0, '{}', n % 20 = 0,
    CASE WHEN n % 4 <> 0 THEN now() + interval '1 minute' END, 0, md5('g' || n),
    now() - (n * interval '10 seconds'), now() - (n * interval '10 seconds')
FROM generate_series(1, 200) AS n;

INSERT INTO payment_events (payment_id, from_status, to_status, status_detail, source, data,
    created_at)
SELECT id, NULL, 'pending', NULL, 'api', '{}', created_at FROM payments;
INSERT INTO payment_events (payment_id, from_status, to_status, status_detail, source, data,
    created_at)
SELECT id, 'pending', status, NULL, CASE WHEN status = 'expired' THEN 'expiry' ELSE 'reconcile'
    END, '{}', updated_at
FROM payments WHERE status <> 'pending';

INSERT INTO notifications (received_at, raw_body, order_id, transaction_status, status_code,
    gross_amount, signature_ok, dedupe_key, payment_id, outcome, applied_at, attempts)
SELECT p.updated_at, repeat('x', 300), p.gateway_order_id, 'settlement', '200',
    p.amount || '.00', true, md5(p.id::text || copy), p.id,
    CASE WHEN copy = 1 THEN 'applied' ELSE 'duplicate' END, p.updated_at, 1
FROM payments AS p CROSS JOIN generate_series(1, 2) AS copy WHERE p.status = 'success';
INSERT INTO notifications (received_at, raw_body, order_id, signature_ok, outcome, attempts,
    body_length, body_sha256)
SELECT now() - (n * interval '1 hour'), '{}', 'FORGED-' || n, false, 'bad_signature', 0, 2,
    md5('b' || n) || md5('c' || n)
FROM generate_series(1, 30) AS n;
INSERT INTO notifications (received_at, raw_body, order_id, transaction_status, signature_ok,
    outcome, attempts, next_attempt_at)
SELECT now() - interval '1 minute', '{}', 'TODAY-' || n, 'pending', true, 'received', 0,
    now() + interval '1 hour'
FROM generate_series(1, 20) AS n;

INSERT INTO outbox (event_id, payment_id, event_type, payload, created_at, dispatched_at)
SELECT md5('o' || id::text)::uuid, id, 'payment.succeeded', '{"order_id": "x"}', updated_at,
    updated_at
FROM payments WHERE status = 'success';
INSERT INTO outbox (event_id, payment_id, event_type, payload, created_at)
SELECT md5('u' || id::text)::uuid, id, 'payment.expired', '{"order_id": "x"}', now()
FROM payments WHERE order_id LIKE 'TODAY-%' AND status = 'pending' LIMIT 5;

INSERT INTO deliveries (message_id, destination, url, status, attempts, next_attempt_at,
    delivered_at, created_at)
SELECT id, 'transaction-service', 'http://127.0.0.1:9/', CASE WHEN id % 2000 = 0 THEN 'dead'
    ELSE 'delivered' END, 1, dispatched_at, dispatched_at, dispatched_at
FROM outbox WHERE dispatched_at IS NOT NULL;
INSERT INTO deliveries (message_id, destination, url, status, attempts, next_attempt_at,
    created_at)
SELECT id, 'subscriber', 'http://127.0.0.1:9/', 'pending', 0, now() + interval '1 hour', now()
FROM outbox WHERE dispatched_at IS NOT NULL ORDER BY id DESC LIMIT 10;

ANALYZE;
"""


@pytest.fixture(scope="module")
def seeded(midtrans_simulator: Any) -> Iterator[Flask]:
    """An app on a database of its own, migrated and seeded with a year of history."""
    with seeded_app(
        PLANS_DATABASE_URL,
        SEED.replace(":history", str(HISTORY)),
        MIDTRANS_BASE_URL=midtrans_simulator.url,
        WORKER_INBOX_THREADS=1,
    ) as app:
        yield app


def _full_scans(run: Callable[[], object]) -> list[str]:
    """Each statement of `run` that reads a growing table sequentially, with its parameters."""
    found = []
    with selects_sent() as statements:
        run()
    assert statements, "nothing was queried"
    for statement, parameters in statements:
        tables = sequential_scans(statement, parameters) & GROWING
        if tables:
            found.append(f"{sorted(tables)} in:\n{statement}\n{parameters}")
    return found


NOW = datetime.now(UTC)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def _payment_pages() -> None:
    for reference in ("ORD-42", "payment-ORD-42"):
        queries.search_payments(reference)
    payment = queries.get_payment("payment-ORD-42")
    queries.get_payment(str(payment.id))
    queries.payments_for_order(payment.order_id)
    queries.counted_attempt(payment.order_id)
    queries.notifications_for(payment)
    queries.refunds_for(payment.id)
    queries.outbox_for(payment.id)
    queries.open_review_reasons(payment.id)


@pytest.mark.parametrize(
    "name, run",
    [
        ("dashboard", lambda app: widgets.gather(NOW, app.config)),
        ("payment pages and search", lambda app: _payment_pages()),
        ("metrics scrape", lambda app: list(DatabaseCollector().collect())),
        (
            "reconcile claim",
            lambda app: reconcile.reconcile_due(current_gateway(), now=LONG_AGO),
        ),
        ("expiry claim", lambda app: reconcile.expire_overdue(current_gateway(), now=LONG_AGO)),
        ("outbox dispatch claim", lambda app: outbox.dispatch_outbox(current_outbound())),
        ("delivery claim", lambda app: outbox.deliver_due(current_outbound(), now=LONG_AGO)),
        (
            "inbox claim",
            lambda app: notifications.apply_waiting(current_gateway(), now=LONG_AGO),
        ),
    ],
)
def test_query_reads_growing_tables_only_through_indexes(
    seeded: Flask, name: str, run: Callable[[Flask], object]
) -> None:
    with seeded.app_context():
        found = _full_scans(lambda: run(seeded))
    assert not found, f"{name}:\n\n" + "\n\n".join(found)


def test_a_day_of_payments_is_read_through_the_created_at_index(seeded: Flask) -> None:
    since = NOW - timedelta(days=1)
    with seeded.app_context():
        found = _full_scans(lambda: queries.totals_by_status(since, NOW))
        found += _full_scans(lambda: queries.hourly_counts(since))
    assert not found, "\n\n".join(found)
