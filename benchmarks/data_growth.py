"""Data growth: the same operations on databases holding more and more history.

For each size N (--sizes, default 10000 1000000) a scratch database tiketq_growth_<N> is created,
migrated and seeded with N payments spread over the past year, shaped like TiketQ's traffic (about
2.4 notifications, 2 events, 1 outbox message and 1.6 deliveries each), then with a "today" working
set that is the same at every size, so that the growth measured is the history's, not the day's.
Against each database the service (gunicorn, the Midtrans simulator in its own process) is timed:
reads, a create, a notification, the ops dashboard, /metrics, a busy and an idle worker round, and
`flask payments audit` in full and incremental. A markdown table compares the sizes.

Run from the project root: .venv/bin/python -m benchmarks.data_growth [--sizes 10000 1000000]
[--runs 5] [--keep | --drop]. Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and
about 8 GB of disk per million payments. Exit code 0: every target met; 1: a target missed;
2: setup error.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import requests
from flask import Flask

from benchmarks.common import (
    ADMIN_DSN,
    ROOT,
    BenchDatabase,
    SetupError,
    served,
    sql,
    wait_quiet,
)
from benchmarks.mixed_load import CREATE_BODY
from benchmarks.webhook_load import (
    ORDER_PREFIX,
    SERVER_KEY,
    awaiting_orders,
    service_env,
    signed_body,
    simulator,
)
from drills.harness import receiver
from tiketq import create_app
from tiketq.config import DEFAULT_DATABASE_SCHEMA, from_environ
from tiketq.extensions import db, schema_options
from tiketq.formats import WIB
from tiketq.gateway import current_gateway
from tiketq.ops.accounts import user_entry
from tiketq.outbound import TRANSACTION_SERVICE, current_outbound
from tiketq.worker import run_once

SEED_VERSION = 1
# Today's payments: enough for every widget of the dashboard, few beside a year of history.
WORKING_SET = 2000
# Seeded flagged payments, at every size: staff resolve reviews, they do not pile up with history.
FLAGGED = 20
# Rejected notifications of the past week (the worker purges older ones) and of today.
REJECTED_WEEK, REJECTED_TODAY = 30, 10
HISTORY_DAYS = 364
SUBSCRIBER = "subscriber:5f2b8c41d0e7"
STAFF, STAFF_PASSWORD = "growth", "data-growth-benchmark"
RNG_SEED = 20261204
# Disk a seeded payment takes (7.4 GB at a million), with room for the WAL and index builds.
BYTES_PER_PAYMENT = 9_000
DISK_SPARE = 5 * 2**30
# Each row's figure may be at most this many times its figure at the smallest size.
GROWTH_TARGET = 2.0
# Absolute targets, from this size up: a year of TiketQ's traffic is about 18 M payments.
ABSOLUTE_FROM = 1_000_000

# The seeding session: no statement timeout, no foreign-key or trigger work for rows that are
# consistent by construction (session_replication_role), bigger sorts for the index builds.
SEED_OPTIONS = (
    "-c statement_timeout=0 -c lock_timeout=30s -c synchronous_commit=off"
    " -c maintenance_work_mem=512MB -c work_mem=64MB"
)

# Everything per seeded payment is derived from n in SQL, so that no row crosses the wire. Ids
# of the big tables are explicit (n * 8 + kind, ...): rows can be made in any order and point
# at each other without joins. The shared columns go through one table, growth_seed.seed,
# unlogged and dropped afterwards, that two sessions read at once.
SEED_TABLE = """
CREATE SCHEMA IF NOT EXISTS growth_seed;
CREATE UNLOGGED TABLE IF NOT EXISTS growth_seed.seed (
    n bigint, id uuid, order_id text, status text, detail text, method text, amount bigint,
    created_at timestamptz, expires_at timestamptz, finished_at timestamptz,
    paid_at timestamptz, refunded_at timestamptz, copies int, flagged boolean, resolved boolean,
    subscriber boolean, checked boolean, keyed boolean, dead boolean, pad int
);
TRUNCATE growth_seed.seed;
"""

# A year of ended payments, evenly spread and ending before today (WIB) began.
HISTORY_SEED = """
INSERT INTO growth_seed.seed
SELECT n, md5('p' || n)::uuid, 'ORD-' || lpad(n::text, 9, '0'), s.status,
    CASE WHEN f.flagged OR f.resolved THEN 'paid_twice' WHEN s.status = 'failed' THEN 'denied'
         WHEN s.status = 'expired' THEN 'expired_by_worker' END,
    s.method, 250000 + mod(r.r4, 4750) * 1000, s.created_at, s.created_at + interval '3 hours',
    e.finished_at,
    CASE WHEN s.status IN ('success', 'refunded') THEN e.finished_at END,
    CASE WHEN s.status = 'refunded' THEN greatest(e.finished_at + interval '1 hour',
        least(e.finished_at + interval '3 days', %(history_end)s)) END,
    CASE WHEN r.r2 < 200 THEN 1 WHEN r.r2 < 550 THEN 2 WHEN r.r2 < 850 THEN 3 ELSE 4 END,
    f.flagged, f.resolved,
    -- The event subscriber came in a third of the way through the year.
    n > %(count)s * 0.3, r.r3 < 600, mod(r.r2, 2) = 0,
    n > %(count)s * 0.3 AND mod(r.r4, 2000) = 0, mod(r.r4, 250)
FROM generate_series(1, %(count)s) AS n
CROSS JOIN LATERAL (
    SELECT mod(hashint8(n) + 2147483648, 1000) AS r1, mod(hashint8(-n) + 2147483648, 1000) AS r2,
        mod(hashint8(n + 4000000000) + 2147483648, 1000) AS r3,
        mod(hashint8(n + 8000000000) + 2147483648, 1000000) AS r4
) AS r
CROSS JOIN LATERAL (
    SELECT mod(n, %(flag_every)s) = 0 AS flagged,
        mod(n, 1000) = 500 AND mod(n, %(flag_every)s) <> 0 AS resolved
) AS f
CROSS JOIN LATERAL (
    SELECT CASE WHEN f.flagged OR f.resolved OR r.r1 < 780 THEN 'success'
                WHEN r.r1 < 810 THEN 'refunded' WHEN r.r1 < 930 THEN 'expired'
                WHEN r.r1 < 970 THEN 'failed' ELSE 'canceled' END AS status,
        (ARRAY['bank_transfer', 'bank_transfer', 'bank_transfer', 'bank_transfer',
               'bank_transfer', 'qris', 'qris', 'credit_card', 'credit_card', 'gopay'])
            [1 + mod(r.r3, 10)] AS method,
        %(history_end)s - (%(count)s - n) * %(spacing)s * interval '1 second' AS created_at
) AS s
CROSS JOIN LATERAL (
    SELECT CASE WHEN s.status IN ('success', 'refunded')
                    THEN s.created_at + (1 + mod(r.r2, 90)) * interval '1 minute'
                WHEN s.status = 'failed'
                    THEN s.created_at + (1 + mod(r.r2, 30)) * interval '1 minute'
                WHEN s.status = 'canceled'
                    THEN s.created_at + (5 + mod(r.r2, 120)) * interval '1 minute'
                ELSE s.created_at + interval '3 hours' END AS finished_at
) AS e
"""

# Today's payments: ended ones made like the history's; the open ones (what the worker re-arms)
# get only their creation event here.
TODAY_SEED = """
INSERT INTO growth_seed.seed
SELECT %(base)s + w.i, md5('p' || (%(base)s + w.i))::uuid, w.order_id, t.status,
    CASE WHEN w.role = 'review' THEN 'paid_twice' WHEN t.status = 'failed' THEN 'denied'
         WHEN t.status = 'expired' THEN 'expired_by_worker' END,
    'bank_transfer', 150000, c.created_at, c.expires_at,
    CASE WHEN t.status = 'pending' THEN NULL WHEN t.status = 'expired' THEN c.expires_at
         ELSE least(c.created_at + interval '5 minutes', %(now)s - interval '1 minute') END,
    CASE WHEN t.status = 'success'
         THEN least(c.created_at + interval '5 minutes', %(now)s - interval '1 minute') END,
    NULL, 2, w.role = 'review', false, true, false, true, false, mod(w.i, 250)
FROM unnest(%(numbers)s::int[], %(orders)s::text[], %(roles)s::text[]) AS w(i, order_id, role)
CROSS JOIN LATERAL (
    SELECT CASE WHEN w.role IN ('expire', 'reconcile', 'open', 'waiting') THEN 'pending'
                WHEN w.role IN ('failed', 'expired', 'canceled') THEN w.role
                ELSE 'success' END AS status
) AS t
CROSS JOIN LATERAL (
    SELECT %(today)s + (%(now)s - %(today)s) * ((%(size)s + 1 - w.i) / (%(size)s + 1.0))
        AS created_at
) AS a
CROSS JOIN LATERAL (
    SELECT CASE WHEN t.status = 'expired'
                THEN least(a.created_at, %(now)s - interval '70 minutes') ELSE a.created_at END
            AS created_at,
        CASE WHEN t.status = 'expired'
                THEN least(a.created_at, %(now)s - interval '70 minutes') + interval '1 hour'
            ELSE a.created_at + interval '12 hours' END AS expires_at
) AS c
"""

PAYMENTS_FROM_SEED = """
INSERT INTO payments (id, order_id, attempt, gateway_order_id, amount, currency, status,
    status_detail, payment_method, payment_type, gateway_transaction_id, snap_token,
    snap_redirect_url, description, customer, items, expires_at, paid_at, refunded_amount,
    payment_details, needs_review, next_check_at, checks, last_checked_at, idempotency_key,
    request_fingerprint, created_at, updated_at)
SELECT id, order_id, 1, order_id, amount, 'IDR', status, detail, method,
    CASE WHEN status <> 'pending' THEN method END,
    CASE WHEN status <> 'pending' THEN md5('t' || n)::uuid::text END,
    md5('s' || n)::uuid::text,
    'https://app.sandbox.midtrans.com/snap/v4/redirection/' || md5('s' || n)::uuid::text,
    'TiketQ order ' || order_id,
    jsonb_build_object('email', 'traveller' || n || '@example.co.id', 'first_name', 'Traveller',
        'last_name', 'No ' || n, 'phone', '+62812' || lpad(mod(n, 10000000)::text, 7, '0')),
    jsonb_build_array(
        jsonb_build_object('id', order_id, 'price', amount - 25000, 'quantity', 1,
            'name', 'CGK - DPS GA-' || (400 + mod(n, 500))),
        jsonb_build_object('id', order_id, 'price', 25000, 'quantity', 1, 'name', 'Service fee')),
    expires_at, paid_at, CASE WHEN status = 'refunded' THEN amount ELSE 0 END,
    CASE WHEN status = 'pending' THEN '{}'::jsonb
         WHEN method = 'bank_transfer' THEN jsonb_build_object('payment_type', method,
            'va_numbers', jsonb_build_array(jsonb_build_object('bank', 'bca',
                'va_number', lpad(n::text, 11, '0'))))
         WHEN method = 'credit_card' THEN jsonb_build_object('payment_type', method,
            'masked_card', '481111-1114', 'bank', 'bni', 'card_type', 'credit')
         ELSE jsonb_build_object('payment_type', method) END,
    flagged, NULL, CASE WHEN checked THEN 2 ELSE 0 END,
    CASE WHEN checked THEN finished_at END,
    CASE WHEN keyed THEN 'idem-' || md5('i' || n) END,
    encode(sha256(convert_to('f' || n, 'UTF8')), 'hex'),
    created_at,
    coalesce(refunded_at, finished_at + CASE WHEN resolved THEN interval '1 day'
        WHEN flagged THEN interval '1 minute' ELSE interval '0' END, created_at)
FROM growth_seed.seed
"""

# A chain from 'pending' to the final status, in id order as the audit reads it: created,
# a VA number noted from the pending notification, the final change, a refund, a review.
EVENTS_FROM_SEED = """
INSERT INTO payment_events (id, payment_id, from_status, to_status, status_detail, source, data,
    notification_id, created_at)
SELECT s.n * 8 + e.k, s.id, e.from_status, e.to_status, e.detail, e.source, '{}', e.note, e.at
FROM growth_seed.seed AS s
CROSS JOIN LATERAL (VALUES
    (1, NULL, 'pending', 'creating', 'api', NULL::bigint, s.created_at, true),
    (2, 'pending', 'pending', NULL, 'webhook', s.n * 4 + 1, s.created_at + interval '1 minute',
        s.method = 'bank_transfer' AND s.copies >= 2 AND s.status <> 'pending'),
    (3, 'pending', CASE WHEN s.status = 'refunded' THEN 'success' ELSE s.status END,
        CASE WHEN s.status IN ('failed', 'expired') THEN s.detail END,
        CASE s.status WHEN 'expired' THEN 'expiry' WHEN 'canceled' THEN 'api' ELSE 'webhook' END,
        CASE WHEN s.status IN ('success', 'refunded', 'failed')
             THEN s.n * 4 + least(2, s.copies) END,
        s.finished_at, s.status <> 'pending'),
    (4, 'success', 'refunded', NULL, 'api', NULL, s.refunded_at, s.status = 'refunded'),
    (5, 'success', 'success', 'paid_twice', 'webhook', NULL, s.finished_at + interval '1 minute',
        s.flagged OR s.resolved),
    (6, 'success', 'success', 'review_resolved', 'ops', NULL, s.finished_at + interval '1 day',
        s.resolved)
) AS e(k, from_status, to_status, detail, source, note, at, present)
WHERE e.present
"""

# A Midtrans HTTP notification of 1.5-2 KB: the fields Midtrans sends and the custom fields and
# metadata a booking carries. Filled with format(), which takes the template as a parameter.
NOTIFICATION_TEMPLATE = json.dumps(
    {
        "va_numbers": [{"va_number": "%1$s", "bank": "bca"}],
        "transaction_type": "on-us",
        "transaction_time": "%2$s",
        "transaction_status": "%3$s",
        "transaction_id": "%4$s",
        "status_message": "midtrans payment notification",
        "status_code": "%5$s",
        "signature_key": "%6$s",
        "settlement_time": "%7$s",
        "reference_id": "%8$s",
        "payment_type": "%9$s",
        "payment_amounts": [{"paid_at": "%7$s", "amount": "%10$s.00"}],
        "order_id": "%11$s",
        "merchant_id": "G141532850",
        "issuer": "bca",
        "gross_amount": "%10$s.00",
        "fraud_status": "accept",
        "expiry_time": "%12$s",
        "currency": "IDR",
        "channel_response_message": "Approved",
        "channel_response_code": "00",
        "acquirer": "bca",
        "custom_field1": "booking=%11$s;trip=one-way;pax=1;cabin=economy;channel=android-app;"
        "locale=id-ID;campaign=none",
        "custom_field2": "route=CGK-DPS;flight=GA-%13$s;depart=%2$s;fare=%10$s;"
        "carrier=Garuda Indonesia;baggage=20kg",
        "custom_field3": "%14$s",
        "metadata": {
            "source": "tiketq-payments",
            "items": [
                {"id": "%11$s", "name": "CGK - DPS GA-%13$s", "price": "%10$s", "quantity": 1},
                {"id": "%11$s", "name": "Service fee", "price": 25000, "quantity": 1},
            ],
            "customer": {
                "email": "traveller%15$s@example.co.id",
                "first_name": "Traveller",
                "last_name": "No %15$s",
                "phone": "+62812%15$s",
            },
        },
    },
    separators=(",", ":"),
)

# Per payment its notifications: the pending one, the final one and Midtrans's redeliveries of it
# (the same body and dedupe key, outcome duplicate). Only the changes the payment's events tell of
# are applied. Each body is built once (OFFSET 0 keeps the planner from building it per copy).
NOTIFICATIONS_FROM_SEED = """
INSERT INTO notifications (id, received_at, raw_body, order_id, transaction_status, status_code,
    gross_amount, signature_ok, dedupe_key, payment_id, outcome, detail, applied_at, attempts,
    body_length, body_sha256)
SELECT s.n * 4 + CASE WHEN k.kind = 0 THEN 1 ELSE k.before + c END, x.at, b.body, s.order_id,
    k.ts, k.code, s.amount || '.00', true,
    encode(sha256(convert_to(s.order_id || ':' || k.ts || ':' || k.code, 'UTF8')), 'hex'),
    s.id, x.outcome,
    CASE WHEN x.outcome = 'duplicate' THEN 'same notification already handled' END,
    x.at + interval '300 milliseconds', 1, b.length, b.sha256
FROM growth_seed.seed AS s
CROSS JOIN LATERAL (
    SELECT s.copies >= 2 AND s.status <> 'pending' AS pending_sent,
        CASE s.status WHEN 'failed' THEN 'deny' WHEN 'expired' THEN 'expire'
                      WHEN 'canceled' THEN 'cancel' ELSE 'settlement' END AS final_status
) AS f
CROSS JOIN LATERAL (VALUES
    (0, 'pending', '201', s.created_at + interval '50 seconds', 0,
        CASE WHEN f.pending_sent THEN 1 ELSE 0 END),
    (1, f.final_status, CASE WHEN f.final_status = 'settlement' THEN '200' ELSE '202' END,
        s.finished_at - interval '5 seconds', CASE WHEN f.pending_sent THEN 1 ELSE 0 END,
        CASE WHEN s.status = 'pending' THEN 0 WHEN f.pending_sent THEN s.copies - 1 ELSE 1 END)
) AS k(kind, ts, code, at, before, copies)
CROSS JOIN LATERAL (
    SELECT body, octet_length(body) AS length,
        encode(sha256(convert_to(body, 'UTF8')), 'hex') AS sha256
    FROM (
        SELECT format(%(template)s,
            lpad(s.n::text, 11, '0'),
            to_char(s.created_at AT TIME ZONE 'Asia/Jakarta', 'YYYY-MM-DD HH24:MI:SS'),
            k.ts, md5('t' || s.n)::uuid::text, k.code,
            encode(sha512(convert_to(s.order_id || k.code || s.amount || '.00' || %(key)s,
                'UTF8')), 'hex'),
            to_char(k.at AT TIME ZONE 'Asia/Jakarta', 'YYYY-MM-DD HH24:MI:SS'),
            md5('r' || s.n || k.ts), s.method, s.amount, s.order_id,
            to_char(s.expires_at AT TIME ZONE 'Asia/Jakarta', 'YYYY-MM-DD HH24:MI:SS'),
            400 + mod(s.n, 500), substr(repeat(md5('c' || s.n), 16), 1, 150 + s.pad),
            s.n) AS body
        WHERE k.copies > 0
        OFFSET 0
    ) AS built
) AS b
CROSS JOIN LATERAL generate_series(1, k.copies) AS c
CROSS JOIN LATERAL (
    SELECT CASE WHEN c = 1 THEN k.at ELSE k.at + (c + 1) * interval '1 minute' END AS at,
        CASE WHEN k.kind = 0
                THEN CASE WHEN s.method = 'bank_transfer' THEN 'applied' ELSE 'duplicate' END
             WHEN c = 1 AND s.status IN ('success', 'refunded', 'failed') THEN 'applied'
             ELSE 'duplicate' END AS outcome
) AS x
"""

OUTBOX_FROM_SEED = """
INSERT INTO outbox (id, event_id, payment_id, event_type, payload, created_at, dispatched_at)
SELECT s.n * 2 + m.j, md5('e' || s.n || '-' || m.j)::uuid, s.id, m.event_type,
    jsonb_build_object('event_type', m.event_type, 'payment_id', s.id::text,
        'order_id', s.order_id, 'gateway_order_id', s.order_id, 'status', m.status,
        'status_detail', NULL, 'amount', s.amount,
        'refunded_amount', CASE WHEN m.j = 1 THEN s.amount ELSE 0 END, 'currency', 'IDR',
        'payment_type', s.method, 'gateway_transaction_id', md5('t' || s.n)::uuid::text,
        'paid_at', s.paid_at, 'occurred_at', m.at),
    m.at, m.at + interval '1 second'
FROM growth_seed.seed AS s
CROSS JOIN LATERAL (VALUES
    (0, CASE WHEN s.status IN ('success', 'refunded') THEN 'payment.succeeded'
             ELSE 'payment.' || s.status END,
        CASE WHEN s.status = 'refunded' THEN 'success' ELSE s.status END, s.finished_at,
        s.status <> 'pending'),
    (1, 'payment.refunded', 'refunded', s.refunded_at, s.status = 'refunded')
) AS m(j, event_type, status, at, present)
WHERE m.present
"""

# The transaction service hears of successes; the subscriber of everything since it came.
DELIVERIES_FROM_SEED = """
INSERT INTO deliveries (id, message_id, destination, url, status, attempts, next_attempt_at,
    last_status_code, last_error, delivered_at, created_at)
SELECT (s.n * 2 + m.j) * 2 + d.d, s.n * 2 + m.j, d.destination, d.url, x.status,
    CASE WHEN x.status = 'dead' THEN 11 ELSE 1 END, m.at + interval '1 second',
    CASE WHEN x.status = 'dead' THEN 503 ELSE 200 END,
    CASE WHEN x.status = 'dead' THEN 'Service Unavailable' END,
    CASE WHEN x.status = 'delivered' THEN m.at + interval '1200 milliseconds' END,
    m.at + interval '1 second'
FROM growth_seed.seed AS s
CROSS JOIN LATERAL (VALUES
    (0, s.finished_at, s.status <> 'pending', s.status IN ('success', 'refunded')),
    (1, s.refunded_at, s.status = 'refunded', false)
) AS m(j, at, present, confirmed)
CROSS JOIN LATERAL (VALUES
    (0, %(transaction_service)s,
        'http://transaction-service:8000/transactions/payments/' || s.order_id || '/confirm',
        m.confirmed),
    (1, %(subscriber)s, 'https://events.tiketq.example/payments', s.subscriber)
) AS d(d, destination, url, present)
CROSS JOIN LATERAL (
    SELECT CASE WHEN d.d = 1 AND m.j = 0 AND s.dead THEN 'dead' ELSE 'delivered' END AS status
) AS x
WHERE m.present AND d.present
"""

REFUNDS_FROM_SEED = """
INSERT INTO refunds (payment_id, refund_key, amount, reason, status, gateway_response,
    created_at, updated_at)
SELECT id, 'refund-' || md5('k' || n), amount, 'traveller cancelled the trip', 'succeeded',
    '{"status_code": "200", "refund_chargeback_id": 1}', refunded_at, refunded_at
FROM growth_seed.seed WHERE status = 'refunded'
"""

# Refused at the door: a fixed few over the past week, before today; the worker purges older.
REJECTED_SEED = """
INSERT INTO notifications (received_at, raw_body, order_id, transaction_status, status_code,
    gross_amount, signature_ok, outcome, detail, attempts, body_length, body_sha256)
SELECT at, '{"order_id": "FORGED-' || k || '", "status_code": "200"}', 'FORGED-' || k,
    'settlement', '200', '150000.00', false, 'bad_signature', 'signature_key does not match', 0,
    1800, encode(sha256(convert_to('forged' || k, 'UTF8')), 'hex')
FROM (
    SELECT k, %(week_end)s - k * ((%(week_end)s - (%(now)s - interval '6 days')) / %(week)s) AS at
    FROM generate_series(1, %(week)s) AS k
    UNION ALL
    SELECT %(week)s + k, %(today)s + k * ((%(now)s - %(today)s) / (%(day)s + 1))
    FROM generate_series(1, %(day)s) AS k
) AS rejected
"""

BIG_TABLES = ("payments", "payment_events", "notifications", "outbox", "deliveries", "refunds")
# Their bigserial ids, set explicitly by the seed: the sequences must go on after the seeded ones.
NUMBERED = BIG_TABLES[1:]

# Indexes that back no constraint: dropped for the bulk load and built again after it.
SECONDARY_INDEXES = """
SELECT c.relname, t.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_class AS t ON t.oid = i.indrelid
JOIN pg_namespace AS ns ON ns.oid = t.relnamespace
WHERE ns.nspname = %(schema)s AND t.relname = ANY(%(tables)s)
    AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.indexrelid)
ORDER BY c.relname
"""

SEQUENCES = """
SELECT setval(pg_get_serial_sequence(%(table)s, 'id'),
    greatest((SELECT max(id) FROM {table}), 1))
"""

# The working set's rows, whatever earlier runs left of them (cascades: events, outbox, refunds).
TODAY_CLEAR = """
DELETE FROM notifications WHERE order_id = ANY(%(orders)s);
DELETE FROM notifications WHERE outcome = 'bad_signature' AND order_id LIKE 'FORGED-%%';
DELETE FROM payments WHERE gateway_order_id = ANY(%(orders)s);
"""

# What the measurements of a previous run (or one cut off) may have left: created payments,
# stored notifications, the day's changes; and a finished purge pass, so that no round of the
# worker spends itself on the retention's first pass over a year of history.
LEFTOVERS = """
DELETE FROM payments WHERE order_id >= 'GROWTH-' AND order_id < 'GROWTH.';
DELETE FROM notifications
WHERE outcome IN ('received', 'failed') AND next_attempt_at IS NOT NULL
    AND NOT order_id = ANY(%(orders)s);
DELETE FROM payment_events
WHERE source = 'ops' AND status_detail = 'checked' AND data @> '{"growth_day": true}';
INSERT INTO maintenance_runs (job, started_at, finished_at, summary)
VALUES ('purge', now(), now(), '{"note": "data_growth: no purge during the measurements"}');
"""

# Before every busy round: the open payments back to pending with the same work due, the
# waiting notifications stored again, deliveries due, messages undispatched.
REARM = """
DELETE FROM outbox WHERE payment_id IN (
    SELECT id FROM payments WHERE gateway_order_id = ANY(%(open)s));
DELETE FROM payment_events WHERE from_status IS NOT NULL AND payment_id IN (
    SELECT id FROM payments WHERE gateway_order_id = ANY(%(open)s));
UPDATE payments SET status = 'pending', status_detail = NULL, paid_at = NULL,
    payment_type = NULL, gateway_transaction_id = NULL, payment_details = '{}',
    needs_review = false, checks = 0, last_checked_at = NULL, refunded_amount = 0,
    expires_at = CASE WHEN gateway_order_id = ANY(%(expire)s)
        THEN %(now)s - interval '10 minutes' ELSE %(now)s + interval '12 hours' END,
    next_check_at = CASE WHEN gateway_order_id = ANY(%(reconcile)s)
        THEN %(now)s - interval '1 minute' WHEN gateway_order_id = ANY(%(expire)s) THEN NULL
        ELSE %(now)s + interval '1 hour' END,
    updated_at = %(now)s
WHERE gateway_order_id = ANY(%(open)s);
DELETE FROM notifications WHERE order_id = ANY(%(waiting)s);
INSERT INTO notifications (received_at, raw_body, order_id, transaction_status, status_code,
    gross_amount, signature_ok, dedupe_key, outcome, attempts, next_attempt_at, body_length)
SELECT %(now)s - interval '1 minute', body, o, 'settlement', '200', '150000.00', true,
    encode(sha256(convert_to(o || ':settlement', 'UTF8')), 'hex'), 'received', 0,
    %(now)s - interval '1 minute', octet_length(body)
FROM unnest(%(waiting)s::text[], %(bodies)s::text[]) AS w(o, body);
UPDATE deliveries AS d SET status = 'pending', attempts = 0,
    next_attempt_at = %(now)s - interval '1 minute', delivered_at = NULL,
    last_status_code = NULL, last_error = NULL,
    url = %(receiver)s || '/transactions/payments/' || p.order_id || '/confirm'
FROM outbox AS o JOIN payments AS p ON p.id = o.payment_id
WHERE d.message_id = o.id AND d.destination = %(transaction_service)s
    AND p.gateway_order_id = ANY(%(deliver)s);
DELETE FROM deliveries WHERE message_id IN (
    SELECT o.id FROM outbox AS o JOIN payments AS p ON p.id = o.payment_id
    WHERE p.gateway_order_id = ANY(%(dispatch)s));
UPDATE outbox SET dispatched_at = NULL WHERE payment_id IN (
    SELECT id FROM payments WHERE gateway_order_id = ANY(%(dispatch)s));
"""

# Before the idle rounds: nothing due for an hour (the drain left only schedules).
DISARM = """
UPDATE payments SET next_check_at = %(later)s
WHERE next_check_at <= %(later)s AND status IN ('pending', 'processing');
UPDATE payments SET expires_at = %(later)s
WHERE expires_at <= %(later)s AND status IN ('pending', 'processing');
UPDATE deliveries SET next_attempt_at = %(later)s
WHERE status = 'pending' AND next_attempt_at <= %(later)s;
UPDATE notifications SET next_attempt_at = %(later)s
WHERE outcome IN ('received', 'failed') AND next_attempt_at <= %(later)s;
"""

# A day of changes for the incremental audit: payments touched, each with an event.
DAY_OF_CHANGES = """
WITH touched AS (
    UPDATE payments SET updated_at = now()
    WHERE id IN (SELECT md5('p' || k * %(step)s)::uuid FROM generate_series(1, %(changes)s) k)
    RETURNING id, status
)
INSERT INTO payment_events (payment_id, from_status, to_status, status_detail, source, data,
    created_at)
SELECT id, status, status, 'checked', 'ops', '{"growth_day": true}', now() FROM touched
"""

SIZES = """
SELECT pg_database_size(current_database()), pg_total_relation_size('notifications')
"""

SHAPE = """
SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM payment_events),
    (SELECT count(*) FROM notifications), (SELECT count(*) FROM outbox),
    (SELECT count(*) FROM deliveries),
    (SELECT avg(octet_length(raw_body))::int FROM notifications WHERE id < 4000)
"""


@dataclass(frozen=True)
class Row:
    """One line of the table: what was measured, its unit, and its targets."""

    key: str
    label: str
    unit: str
    # Judged against the smallest size's figure (GROWTH_TARGET), else only shown.
    growth: bool = True
    # At most this much from ABSOLUTE_FROM payments up.
    absolute: float | None = None
    decimals: int = 1


ROWS = (
    Row("get", "GET /payments/<id>", "ms"),
    Row("order", "GET /payments/order/<order_id>", "ms"),
    Row("create", "POST /payments", "ms"),
    Row("webhook", "POST /payments/webhook (signed)", "ms"),
    Row("ops", "GET /ops (dashboard, staff)", "ms", absolute=300),
    Row("metrics", "GET /metrics", "ms"),
    Row("busy", "worker round, busy", "ms", absolute=5000, decimals=0),
    Row("idle", "worker round, idle", "ms"),
    Row("audit_full", "audit --full", "s", growth=False, decimals=2),
    # Shown, not judged: at 10,000 payments every table sits in shared_buffers, at a million
    # a batch reads its payments' scattered heap blocks; the issue asks for the rate.
    Row("audit_full_rate", "audit --full, per payment", "µs", growth=False, decimals=0),
    Row(
        "audit_inc",
        "audit incremental (a day's changes)",
        "s",
        growth=False,
        absolute=10,
        decimals=2,
    ),
    Row("audit_inc_each", "audit incremental, per changed payment", "µs", decimals=0),
    Row("db_size", "database size", "MB", growth=False, decimals=0),
    Row("notifications_share", "notifications' share of it", "%", growth=False, decimals=0),
)


@dataclass
class Measured:
    """Everything measured at one size."""

    size: int
    database: str
    seed_seconds: float | None = None
    reused: bool = False  # a kept database; seed_seconds is then what its seeding took
    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Roles:
    """Today's working set: the gateway order ids of each part, the same at every size."""

    by_role: dict[str, list[str]]

    @classmethod
    def make(cls, batch: int) -> Roles:
        """Open parts from orders the simulator has awaiting payment, ended ones from paid."""
        unpaid = awaiting_orders(WORKING_SET)
        awaiting = sorted(unpaid)
        paid = [n for n in range(1, WORKING_SET + 1) if n not in unpaid]
        parts = {
            "expire": awaiting[:batch],
            "reconcile": awaiting[batch : 2 * batch],
            "open": awaiting[2 * batch :],
            "waiting": paid[:batch],
            "deliver": paid[batch : 2 * batch],
            "dispatch": paid[2 * batch : 2 * batch + 20],
            "review": paid[2 * batch + 20 : 2 * batch + 25],
            "failed": paid[2 * batch + 25 : 2 * batch + 125],
            "expired": paid[2 * batch + 125 : 2 * batch + 225],
            "canceled": paid[2 * batch + 225 : 2 * batch + 275],
            "success": paid[2 * batch + 275 :],
        }
        return cls({role: [order_id(n) for n in numbers] for role, numbers in parts.items()})

    def orders(self, *roles: str) -> list[str]:
        """The order ids of these parts (all parts if none are named)."""
        return [o for role in roles or self.by_role for o in self.by_role[role]]

    def table(self) -> tuple[list[int], list[str], list[str]]:
        """Each working-set payment's number, order id and part, for TODAY_SEED."""
        rows = sorted((int(o.removeprefix(ORDER_PREFIX)), o, role)
                      for role, orders in self.by_role.items() for o in orders)  # fmt: skip
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def order_id(n: int) -> str:
    """The gateway order id of working-set payment n, as the simulator's seed names it."""
    return f"{ORDER_PREFIX}{n:06d}"


def history_id(n: int) -> str:
    """The id of the n-th history payment, as HISTORY_SEED makes it."""
    return str(uuid.UUID(hashlib.md5(f"p{n}".encode()).hexdigest()))


def history_order(n: int) -> str:
    """The order id of the n-th history payment."""
    return f"ORD-{n:09d}"


# Setting up a database.


def connect(database: BenchDatabase, options: str = "") -> Any:
    """An autocommit session on the database, the service's schema first on its search_path."""
    conn = psycopg2.connect(
        database.dsn, connect_timeout=5, options=schema_options(DEFAULT_DATABASE_SCHEMA, options)
    )
    conn.autocommit = True
    return conn


def seeded_version(database: BenchDatabase) -> dict[str, Any] | None:
    """What a completed seed wrote on the database (its comment), or None."""
    rows = sql(
        ADMIN_DSN,
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %(db)s",
        {"db": database.name},
        fetch=True,
    )
    if not rows or not rows[0][0]:
        return None
    with contextlib.suppress(ValueError):
        found = json.loads(rows[0][0])
        if found.get("version") == SEED_VERSION:
            return found
    return None


def today_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The start of today (WIB, as the dashboard counts it) and the end of the history."""
    today = now.astimezone(WIB).replace(hour=0, minute=0, second=0, microsecond=0)
    # Everything of the history (a refund three days on included) is over before today.
    history_end = min(today, now - timedelta(days=1)) - timedelta(minutes=10)
    return today, history_end


# A seeding statement: its label in the timings, the SQL, its parameters.
Step = tuple[str, str, dict[str, Any] | None]


class Seeding:
    """One autocommit session of the seeding, noting each step's seconds."""

    def __init__(self, database: BenchDatabase, steps: dict[str, float]) -> None:
        self.conn = connect(database, SEED_OPTIONS)
        self.steps = steps

    def run(self, statement: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a statement; its rows, if it returns any."""
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def timed(self, *steps: Step) -> None:
        """Run steps one after the other, timing each."""
        for label, statement, params in steps:
            started = time.monotonic()
            self.run(statement, params)
            self.steps[label] = self.steps.get(label, 0.0) + time.monotonic() - started

    def close(self) -> None:
        """End the session."""
        self.conn.close()


def in_parallel(
    database: BenchDatabase, steps: dict[str, float], label: str, groups: list[list[Step]],
    *, replica: bool = False,
) -> None:  # fmt: skip
    """Run each group's steps in a session of its own, the groups at once; time the whole."""
    started = time.monotonic()

    def run(group: list[Step]) -> None:
        session = Seeding(database, steps)
        try:
            if replica:
                session.run("SET session_replication_role = replica")
            session.timed(*group)
        finally:
            session.close()

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        for done in [pool.submit(run, group) for group in groups]:
            done.result()
    steps[label] = time.monotonic() - started


def table_steps() -> list[Step]:
    """The statements that make every table's rows from the seed table's payments."""
    notifications = {"template": NOTIFICATION_TEMPLATE, "key": SERVER_KEY}
    destinations = {"transaction_service": TRANSACTION_SERVICE, "subscriber": SUBSCRIBER}
    # In the order the foreign keys ask for (events name notifications).
    return [
        ("payments", PAYMENTS_FROM_SEED, None),
        ("notifications", NOTIFICATIONS_FROM_SEED, notifications),
        ("events", EVENTS_FROM_SEED, None),
        ("outbox", OUTBOX_FROM_SEED, None),
        ("deliveries", DELIVERIES_FROM_SEED, destinations),
        ("refunds", REFUNDS_FROM_SEED, None),
    ]


def seed(database: BenchDatabase, size: int, roles: Roles, env: dict[str, str]) -> float:
    """Create, migrate and seed the database with `size` payments of history and today's set."""
    started = time.monotonic()
    steps: dict[str, float] = {}
    database.create(env)
    steps["create + migrate"] = time.monotonic() - started
    now = datetime.now(UTC)
    today, history_end = today_bounds(now)
    main = Seeding(database, steps)
    try:
        main.run("SET session_replication_role = replica")
        where = {"schema": DEFAULT_DATABASE_SCHEMA, "tables": list(BIG_TABLES)}
        indexes = main.run(SECONDARY_INDEXES, where)
        main.timed(*(("drop indexes", f"DROP INDEX {name}", None) for name, _, _ in indexes))
        main.run(SEED_TABLE)
        history = {
            "count": size,
            "history_end": history_end,
            "spacing": HISTORY_DAYS * 86400 / size,
            "flag_every": max(size // FLAGGED, 1),
        }
        main.timed(("history", HISTORY_SEED, history))
        # The notifications take about as long as all the other tables together; without the
        # foreign keys' triggers (replica) the tables may be filled in any order.
        tables = [[step for step in table_steps() if (step[0] == "notifications") is mine]
                  for mine in (True, False)]  # fmt: skip
        in_parallel(database, steps, "tables (2 sessions)", tables, replica=True)
        started_today = time.monotonic()
        seed_today(main, size, roles, now, today)
        steps["today"] = time.monotonic() - started_today
        builds = [[("indexes", d, None) for _, t, d in indexes if (t == "notifications") is mine]
                  for mine in (True, False)]  # fmt: skip
        in_parallel(database, steps, "build indexes (2 sessions)", builds)
        main.run("SET session_replication_role = DEFAULT")
        main.run("DROP SCHEMA growth_seed CASCADE")
        # Autovacuum is off on this server; in production it would have visited the tables.
        vacuums = [[("vacuum", f"VACUUM (ANALYZE) {t}", None) for t in BIG_TABLES
                    if (t == "notifications") is mine] for mine in (True, False)]  # fmt: skip
        in_parallel(database, steps, "vacuum analyze (2 sessions)", vacuums)
        main.timed(("checkpoint", "CHECKPOINT", None))
    finally:
        main.close()
    seconds = time.monotonic() - started
    comment = json.dumps({"version": SEED_VERSION, "size": size, "seconds": round(seconds, 1),
                          "steps": {k: round(v, 1) for k, v in steps.items()}})  # fmt: skip
    sql(ADMIN_DSN, f"COMMENT ON DATABASE {database.name} IS %(c)s", {"c": comment})
    print(f"  seeded {database.name} in {seconds:.0f} s: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in steps.items()), flush=True)  # fmt: skip
    return seconds


def seed_today(session: Seeding, size: int, roles: Roles, now: datetime, today: datetime) -> None:
    """Today's working set and the week's rejected notifications, made afresh."""
    numbers, orders, parts = roles.table()
    session.run(TODAY_CLEAR, {"orders": orders})
    session.run(SEED_TABLE)
    session.run(TODAY_SEED, {"base": size, "numbers": numbers, "orders": orders, "roles": parts,
                             "now": now, "today": today, "size": WORKING_SET})  # fmt: skip
    for _, statement, params in table_steps():
        session.run(statement, params)
    # Rows made from here on take their ids from the sequences, past every explicit one.
    for table in NUMBERED:
        session.run(SEQUENCES.format(table=table), {"table": table})
    week_end = min(today, now - timedelta(hours=1))
    session.run(REJECTED_SEED, {"week_end": week_end, "now": now, "today": today,
                                "week": REJECTED_WEEK, "day": REJECTED_TODAY})  # fmt: skip


def refresh(database: BenchDatabase, size: int, roles: Roles) -> None:
    """Make a kept database's working set today's again, and clear what earlier runs left."""
    now = datetime.now(UTC)
    today, _ = today_bounds(now)
    session = Seeding(database, {})
    try:
        seed_today(session, size, roles, now, today)
        session.run("DROP SCHEMA growth_seed CASCADE")
        session.run(LEFTOVERS, {"orders": roles.orders()})
        # Autovacuum is off here: each run's changes would otherwise pile up as dead rows.
        for table in BIG_TABLES:
            session.run(f"VACUUM (ANALYZE) {table}")
        session.run("CHECKPOINT")
    finally:
        session.close()


def prepare(
    database: BenchDatabase, size: int, roles: Roles, env: dict[str, str], reseed: bool
) -> tuple[float | None, bool]:
    """A seeded database at `size`: a complete kept one re-used, else seeded.

    Returns the seconds its seeding took and whether it was re-used.
    """
    kept = None if reseed else seeded_version(database)
    if kept is not None and kept.get("size") == size:
        print(f"  re-using {database.name} (seeded in {kept.get('seconds')} s)", flush=True)
        # A kept database also gets the migrations written since it was seeded, which may
        # build indexes over a million payments for minutes.
        database.migrate(env, timeout=600)
        refresh(database, size, roles)
        seconds = kept.get("seconds")
    else:
        seconds = seed(database, size, roles, env)
    # Due work as the day has it, for the pages to show; the worker's rounds re-arm it anyway.
    rearm(database, roles, "http://127.0.0.1:9")
    return seconds, kept is not None and kept.get("size") == size


# Measuring.


def median_of_runs(runs: int, once: Callable[[], float]) -> tuple[float, list[float]]:
    """A warm-up run, then `runs` runs: their median and each run's figure."""
    once()
    figures = [once() for _ in range(runs)]
    return statistics.median(figures), figures


@dataclass
class Client:
    """Requests to the service over one keep-alive session, each checked and timed."""

    url: str
    session: requests.Session = field(default_factory=requests.Session)

    def timed(self, method: str, path: str, expect: int, **kwargs: Any) -> float:
        """Send one request; its milliseconds; a setup error if it is not answered `expect`."""
        started = time.perf_counter()
        response = self.session.request(method, self.url + path, timeout=60, **kwargs)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != expect:
            raise SetupError(
                f"{method} {path} answered {response.status_code}, not {expect}: "
                f"{response.text[:500]}"
            )
        return elapsed

    def sign_in(self) -> None:
        """Sign in to the ops pages as the benchmark's member of staff."""
        page = self.session.get(f"{self.url}/ops/login", timeout=30)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)
        if token is None:
            raise SetupError(f"no CSRF token on the ops login page ({page.status_code})")
        form = {"csrf_token": token.group(1), "name": STAFF, "password": STAFF_PASSWORD}
        answer = self.session.post(
            f"{self.url}/ops/login", data=form, allow_redirects=False, timeout=30
        )
        if answer.status_code != 303 or "/login" in answer.headers.get("Location", ""):
            raise SetupError(f"the ops login was refused ({answer.status_code})")


def measure_http(url: str, measured: Measured, args: argparse.Namespace) -> None:
    """Each endpoint: `requests` sequential requests per run, the run's mean, median of runs."""
    rng = random.Random(RNG_SEED + measured.size)
    api, staff = Client(url), Client(url)
    staff.sign_in()
    tag = f"GROWTH-{os.getpid()}-{measured.size}"
    created = iter(range(1, 1_000_000))

    def history() -> int:
        return rng.randint(1, measured.size)

    def create() -> float:
        body = {**CREATE_BODY, "order_id": f"{tag}-{next(created)}"}
        return api.timed("POST", "/payments", 201, json=body)

    def webhook() -> float:
        body = signed_body(history_order(history()), "settlement")
        headers = {"Content-Type": "application/json"}
        return api.timed("POST", "/payments/webhook", 200, data=body, headers=headers)

    probes: dict[str, Callable[[], float]] = {
        "get": lambda: api.timed("GET", f"/payments/{history_id(history())}", 200),
        "order": lambda: api.timed("GET", f"/payments/order/{history_order(history())}", 200),
        "create": create,
        "webhook": webhook,
        "ops": lambda: staff.timed("GET", "/ops", 200, allow_redirects=False),
        "metrics": lambda: api.timed("GET", "/metrics", 200),
    }
    for key, probe in probes.items():

        def once(probe: Callable[[], float] = probe) -> float:
            return statistics.mean(probe() for _ in range(args.requests))

        measured.values[key], _ = median_of_runs(args.runs, once)


def in_process_app(env: dict[str, str]) -> Flask:
    """The service's app in this process, configured as the servers are, quiet but for errors."""
    return create_app(from_environ({**env, "LOG_LEVEL": "ERROR"}, str(ROOT / "instance")))


def rearm(database: BenchDatabase, roles: Roles, receiver_url: str) -> None:
    """Put today's working set back to a busy round's worth of due work."""
    waiting = roles.orders("waiting")
    params = {
        "now": datetime.now(UTC),
        "open": roles.orders("expire", "reconcile", "open", "waiting"),
        "expire": roles.orders("expire"),
        "reconcile": roles.orders("reconcile"),
        "waiting": waiting,
        "bodies": [signed_body(o, "settlement") for o in waiting],
        "deliver": roles.orders("deliver"),
        "dispatch": roles.orders("dispatch"),
        "receiver": receiver_url,
        "transaction_service": TRANSACTION_SERVICE,
    }
    sql(database.dsn, REARM, params)


def round_ms(batch: int) -> tuple[float, dict[str, int]]:
    """One worker round, as `flask payments worker` runs it: its milliseconds and its counts."""
    gateway, outbound = current_gateway(), current_outbound()
    started = time.perf_counter()
    done = run_once(gateway, outbound, batch=batch)
    elapsed = (time.perf_counter() - started) * 1000
    db.session.remove()
    return elapsed, done


def drain(batch: int) -> None:
    """Rounds until one finds nothing to do: what a busy round left is not the next one's."""
    for _ in range(50):
        _, done = round_ms(batch)
        if not any(done.values()):
            return
    raise SetupError("the worker still found work after 50 rounds")


def measure_worker(
    app: Flask, database: BenchDatabase, roles: Roles, receiver_url: str, measured: Measured,
    args: argparse.Namespace,
) -> None:  # fmt: skip
    """A busy round after re-arming the working set, median of runs; then an idle one."""
    counts: list[dict[str, int]] = []

    def busy() -> float:
        rearm(database, roles, receiver_url)
        elapsed, done = round_ms(args.batch)
        counts.append(done)
        drain(args.batch)
        return elapsed

    def idle() -> float:
        elapsed, done = round_ms(args.batch)
        if any(done.values()):
            measured.notes.append(f"an idle round found work: {done}")
        return elapsed

    with app.app_context():
        measured.values["busy"], _ = median_of_runs(args.runs, busy)
        did = counts[-1]
        measured.notes.append("busy round did " + ", ".join(f"{k} {v}" for k, v in did.items()))
        expected = {"applied", "reconciled", "expired", "dispatched", "delivered"}
        short = [k for k in sorted(expected) if did.get(k, 0) < args.batch]
        if short:
            measured.notes.append(f"busy round short of {args.batch} in: {', '.join(short)}")
        sql(database.dsn, DISARM, {"later": datetime.now(UTC) + timedelta(hours=1)})
        measured.values["idle"], _ = median_of_runs(args.runs, idle)
        db.session.remove()


@dataclass(frozen=True)
class Audit:
    """One `flask payments audit` run: seconds, exit code and its last lines."""

    seconds: float
    exit_code: int
    tail: str


def run_audit(app: Flask, *options: str) -> Audit:
    """`flask payments audit` in this process (no interpreter start in the figure)."""
    runner = app.test_cli_runner()
    started = time.perf_counter()
    result = runner.invoke(args=["payments", "audit", *options])
    seconds = time.perf_counter() - started
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        detail = "".join(traceback.format_exception(result.exception))
        raise SetupError(f"flask payments audit {' '.join(options)} raised:\n{detail[-3000:]}")
    lines = [line for line in result.output.splitlines() if line.strip()]
    return Audit(seconds, result.exit_code, "\n".join(lines[-3:]))


def measure_audit(
    app: Flask, database: BenchDatabase, measured: Measured, args: argparse.Namespace
) -> None:
    """A full audit recording a clean run, a day of changes, then the incremental audit."""
    with app.app_context():
        incremental = (
            "--full" in app.test_cli_runner().invoke(args=["payments", "audit", "--help"]).output
        )
        full = run_audit(app, "--full") if incremental else run_audit(app)
        payments = database.rows("SELECT count(*) FROM payments")[0][0]
        measured.values["audit_full"] = full.seconds
        measured.values["audit_full_rate"] = full.seconds / payments * 1e6
        measured.notes.append(f"audit --full: {full.tail.replace(chr(10), ' | ')}")
        if full.exit_code != 0:
            # The seed and the worker's rounds keep every invariant: a violation is a bug.
            raise SetupError(f"the full audit found violations:\n{full.tail}")
        if not incremental:
            measured.notes.append(
                "`flask payments audit` has no --full yet: the incremental audit is not there, "
                "so its rows were not measured (the full figure is plain `audit`)"
            )
            return
        changes = min(args.day_changes, measured.size)
        sql(database.dsn, DAY_OF_CHANGES,
            {"changes": changes, "step": max(measured.size // changes, 1)})  # fmt: skip
        inc = run_audit(app)
        # It also checks what the worker rounds changed within its margin: count what it says.
        said = re.search(r"checked ([\d,]+) payments", inc.tail)
        checked = int(said.group(1).replace(",", "")) if said else changes
        measured.values["audit_inc"] = inc.seconds
        measured.values["audit_inc_each"] = inc.seconds / max(checked, 1) * 1e6
        measured.notes.append(f"audit after {changes:,} changed payments: "
                              + inc.tail.replace("\n", " | "))  # fmt: skip
        if inc.exit_code != 0:
            raise SetupError(f"the incremental audit found violations:\n{inc.tail}")
        db.session.remove()


def measure_sizes(database: BenchDatabase, measured: Measured) -> None:
    """The database's size and the notifications' share of it."""
    total, notifications = database.rows(SIZES)[0]
    measured.values["db_size"] = total / 2**20
    measured.values["notifications_share"] = notifications / total * 100


def note_shape(database: BenchDatabase, measured: Measured) -> None:
    """What the seed made: rows per payment, before the measurements add their own."""
    rows = database.rows(SHAPE)[0]
    payments = max(rows[0], 1)
    measured.notes.append(
        f"{rows[0]:,} payments; per payment {rows[1] / payments:.2f} events, "
        f"{rows[2] / payments:.2f} notifications (raw body ~{rows[5] or 0:,} bytes), "
        f"{rows[3] / payments:.2f} outbox, {rows[4] / payments:.2f} deliveries"
    )


def measure(size: int, roles: Roles, args: argparse.Namespace, work: Path) -> Measured:
    """Seed (or re-use) the database of one size and measure every operation against it."""
    database = BenchDatabase(f"{args.prefix}_{size}")
    measured = Measured(size, database.name)
    env = {
        **service_env(args, work, database),
        "SECRET_KEY": "data-growth-benchmark-secret-key",
        "OPS_USERS": user_entry(STAFF, STAFF_PASSWORD),
        "EVENT_SIGNING_SECRET": "data-growth-benchmark-signing-secret",
    }
    print(f"size {size:,}: {database.name}", flush=True)
    measured.seed_seconds, measured.reused = prepare(database, size, roles, env, args.reseed)
    note_shape(database, measured)
    with (
        simulator(env, work, WORKING_SET, f"simulator-{size}") as sim,
        receiver() as receiving,
    ):
        env = {
            **env,
            "MIDTRANS_BASE_URL": sim.url,
            "TRANSACTION_SERVICE_URL": receiving.url,
            "EVENT_SUBSCRIBER_URLS": f"{receiving.url}/events",
        }
        wait_quiet(args.wait_quiet)
        # Other work on the shared machine skews a size's figures: say how busy it was.
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        measured.notes.append(f"load average {load} when its measurements began")
        with served("wsgi:app", env, work / f"service-{size}.log") as (url, _):
            measure_http(url, measured, args)
        database.wait_idle()
        sql(database.dsn, LEFTOVERS, {"orders": roles.orders()})
        app = in_process_app(env)
        try:
            measure_worker(app, database, roles, receiving.url, measured, args)
            measure_audit(app, database, measured, args)
        finally:
            with app.app_context():
                db.engine.dispose()
    measure_sizes(database, measured)
    print(f"  measured {size:,}", flush=True)
    return measured


# The report.


def judge(row: Row, results: list[Measured]) -> tuple[str, bool]:
    """The row's verdict ('ok', 'MISS ...' or '') and whether it passed."""
    figures = [(m.size, m.values.get(row.key)) for m in results]
    if any(value is None for _, value in figures):
        return ("not measured" if row.growth or row.absolute else ""), True
    misses = []
    base = figures[0][1]
    if row.growth and len(figures) > 1:
        for size, value in figures[1:]:
            if base > 0 and value > GROWTH_TARGET * base:
                misses.append(f"{value / base:.1f}x at {size:,}")
    if row.absolute is not None:
        for size, value in figures:
            if size >= ABSOLUTE_FROM and value >= row.absolute:
                misses.append(f"{value:,.{row.decimals}f} {row.unit} at {size:,}")
    if misses:
        return "MISS " + "; ".join(misses), False
    return ("ok" if row.growth or row.absolute else ""), True


def target_text(row: Row) -> str:
    parts = [f"≤ {GROWTH_TARGET:g}×"] if row.growth else []
    if row.absolute is not None:
        parts.append(f"< {row.absolute:g} {row.unit} from {ABSOLUTE_FROM:,}")
    return ", ".join(parts) or "—"


def cell(row: Row, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{row.decimals}f}"


def report(results: list[Measured], args: argparse.Namespace) -> bool:
    """Print the markdown table and the notes; True if every target was met."""
    sizes = [f"{m.size:,}" for m in results]
    growth = f"growth ({sizes[-1]}/{sizes[0]})" if len(results) > 1 else "growth"
    print(
        f"\ndata growth: median of {args.runs} runs after a warm-up; HTTP figures are the mean "
        f"of {args.requests} sequential keep-alive requests per run; worker rounds in-process, "
        f"batch {args.batch}; audit in-process\n"
    )
    print(f"| operation | {' | '.join(sizes)} | {growth} | target | verdict |")
    print(f"|---|{'---:|' * len(sizes)}---:|---|---|")
    passed = True
    for row in ROWS:
        values = [m.values.get(row.key) for m in results]
        first, last = values[0], values[-1]
        ratio = f"{last / first:.2f}×" if first and last is not None else "—"
        verdict, ok = judge(row, results)
        passed = passed and ok
        cells = " | ".join(cell(row, v) for v in values)
        print(f"| {row.label} ({row.unit}) | {cells} | {ratio} | {target_text(row)} | {verdict} |")
    seeding = [
        ("?" if m.seed_seconds is None else f"{m.seed_seconds:,.0f}")
        + (" (kept)" if m.reused else "")
        for m in results
    ]
    print(f"| seeding (s) | {' | '.join(seeding)} | — | — |  |")
    for m in results:
        print(f"\n{m.size:,} ({m.database}):")
        for note in m.notes:
            print(f"  {note}")
    print("\nall targets met" if passed else "\nTARGET MISSED")
    return passed


def check_disk(args: argparse.Namespace) -> None:
    """Refuse to start seeding what the server's disk cannot hold."""
    to_seed = [
        size
        for size in args.sizes
        if args.reseed
        or (seeded_version(BenchDatabase(f"{args.prefix}_{size}")) or {}).get("size") != size
    ]
    directory = sql(ADMIN_DSN, "SHOW data_directory", fetch=True)[0][0]
    free = shutil.disk_usage(directory).free
    needed = sum(to_seed) * BYTES_PER_PAYMENT + DISK_SPARE
    if to_seed and needed > free:
        raise SetupError(
            f"seeding {', '.join(f'{s:,}' for s in to_seed)} payments needs about "
            f"{needed / 2**30:.0f} GB on {directory}, {free / 2**30:.0f} GB are free"
        )


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=5, help="measured runs after the warm-up")
    parser.add_argument("--requests", type=int, default=20, help="HTTP requests per run")
    parser.add_argument(
        "--batch", type=int, default=50, help="WORKER_BATCH, and each part of the busy work"
    )
    parser.add_argument(
        "--day-changes", type=int, default=50_000,
        help="payments a day changes before the incremental audit (at most the size)",
    )  # fmt: skip
    parser.add_argument("--prefix", default="tiketq_growth", help="scratch databases' name prefix")
    parser.add_argument(
        "--wait-quiet", type=int, default=30, help="seconds to wait for other load to stop"
    )
    parser.add_argument("--workers", type=int, default=2, help="GUNICORN_WORKERS")
    parser.add_argument("--threads", type=int, default=4, help="GUNICORN_THREADS")
    parser.add_argument("--reseed", action="store_true", help="seed again even if one is kept")
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument("--keep", action="store_true", help="keep the databases (and re-use them)")
    keep.add_argument("--drop", action="store_true", help="drop the databases (the default)")
    args = parser.parse_args(argv)
    args.sizes = sorted(set(args.sizes))
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", args.prefix):
        parser.error("--prefix: lower-case letters, digits and _")
    if min(args.sizes) < 1 or args.runs < 1 or args.requests < 1 or not 1 <= args.batch <= 100:
        parser.error("sizes, --runs and --requests must be positive, --batch 1-100")
    return args


def _terminated(signum: int, frame: object) -> None:
    raise SetupError("stopped by SIGTERM")


def main(argv: list[str]) -> int:
    """Measure every size; 0 if every target was met, 1 if not, 2 if it could not run."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    work = Path(tempfile.mkdtemp(prefix="data_growth."))
    roles = Roles.make(args.batch)
    names = [BenchDatabase(f"{args.prefix}_{size}") for size in args.sizes]
    free = shutil.disk_usage("/").free / 2**30
    print(f"sizes {', '.join(f'{s:,}' for s in args.sizes)}; {free:.0f} GB free on /", flush=True)
    try:
        check_disk(args)
        results = [measure(size, roles, args, work) for size in args.sizes]
        passed = report(results, args)
    except Exception as exc:  # whatever stopped the measurement, it is not a result
        detail = str(exc) if isinstance(exc, SetupError) else traceback.format_exc()
        print(f"setup error: {detail}\n(server logs in {work})", file=sys.stderr)
        return 2
    finally:
        for database in names:
            if args.keep:
                print(f"kept database {database.name} ({database.dsn}); --drop removes it")
            else:
                with contextlib.suppress(psycopg2.Error):
                    database.drop()
                    print(f"dropped database {database.name}")
    shutil.rmtree(work)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
