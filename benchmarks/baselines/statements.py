"""Every SQL statement the baselines run, on the service's migrated tables.

Written with `:name` parameters, as SQLAlchemy's text() takes them; the psycopg2 app rewrites
them to `%(name)s` once (see `pyformat`). No `::` casts: PostgreSQL types the parameters itself.
"""

from __future__ import annotations

import functools
import re

# The connection option that finds those tables where the service's migrations put them: in
# its schema (DATABASE_SCHEMA's default), not in public.
SEARCH_PATH = "-c search_path=payment"

# Open and paid: an order has at most one attempt in these (uq_payments_order_id_counted).
COUNTED = "('pending', 'processing', 'success', 'refunded')"
OPEN = "('pending', 'processing')"

LIVE_ATTEMPT = f"""
SELECT * FROM payments WHERE order_id = :order_id AND status IN {COUNTED} FOR UPDATE
"""

# Any conflict (the order got a live attempt meanwhile) returns no row instead of an error.
INSERT_PAYMENT = """
INSERT INTO payments (
    id, order_id, attempt, gateway_order_id, amount, currency, status, status_detail,
    payment_method, description, customer, items, expires_at, refunded_amount,
    request_fingerprint, created_at, updated_at)
VALUES (
    :id, :order_id, 1, :order_id, :amount, 'IDR', 'pending', 'creating',
    :payment_method, :description, :customer, :items,
    now() + make_interval(hours => :expiry_hours), 0, :fingerprint, now(), now())
ON CONFLICT DO NOTHING
RETURNING id
"""

# clock_timestamp(): when the change was written, not when the transaction began (the webhook's
# transaction spans the Midtrans status call), so that arrival-to-success times can be read back.
INSERT_EVENT = """
INSERT INTO payment_events (
    payment_id, from_status, to_status, status_detail, source, data, notification_id, created_at)
VALUES (:payment_id, :from_status, :to_status, :status_detail, :source, '{}', :notification_id,
        clock_timestamp())
"""

STORE_TOKEN = """
UPDATE payments SET snap_token = :token, snap_redirect_url = :redirect_url, status_detail = NULL,
    next_check_at = now() + interval '2 minutes', updated_at = now()
WHERE id = :id
RETURNING *
"""

CREATE_FAILED = """
UPDATE payments SET status = 'failed', status_detail = :detail, updated_at = now() WHERE id = :id
"""

PAYMENT = "SELECT * FROM payments WHERE id = :id"

# The service's refresh_if_stale: an open payment not checked lately, unless another request is
# checking it right now.
STALE_FOR_REFRESH = f"""
SELECT id, gateway_order_id FROM payments
WHERE id = :id AND status IN {OPEN} AND snap_token IS NOT NULL
  AND (last_checked_at IS NULL OR last_checked_at <= now() - make_interval(secs => :seconds))
FOR UPDATE SKIP LOCKED
"""

CHECKED = """
UPDATE payments SET checks = checks + 1, last_checked_at = now(), updated_at = now()
WHERE id = :id
"""

INSERT_NOTIFICATION = """
INSERT INTO notifications (
    received_at, raw_body, order_id, transaction_status, status_code, gross_amount,
    signature_ok, dedupe_key, outcome)
VALUES (now(), :raw_body, :order_id, :transaction_status, :status_code, :gross_amount,
        :signature_ok, :dedupe_key, :outcome)
RETURNING id
"""

# The whole row, as the service's rules read it.
LOCK_BY_GATEWAY_ORDER = "SELECT * FROM payments WHERE gateway_order_id = :order_id FOR UPDATE"

APPLY_STATUS = """
UPDATE payments SET status = :status, status_detail = NULL, payment_type = :payment_type,
    gateway_transaction_id = :transaction_id, last_checked_at = now(),
    paid_at = CASE WHEN :status = 'success' THEN now() ELSE paid_at END,
    next_check_at = CASE WHEN :status = 'success' THEN NULL ELSE next_check_at END,
    updated_at = now()
WHERE id = :id
"""

# One message per payment and event, as the service's uq_outbox_payment_event guarantees.
INSERT_OUTBOX = """
INSERT INTO outbox (event_id, payment_id, event_type, payload, created_at)
VALUES (:event_id, :payment_id, :event_type, :payload, now())
ON CONFLICT DO NOTHING
"""

# A status answer that changes nothing: the service still records the check and the details.
ANSWERED = """
UPDATE payments SET payment_type = :payment_type, gateway_transaction_id = :transaction_id,
    last_checked_at = now(), updated_at = now()
WHERE id = :id
"""

CLOSE_NOTIFICATION = """
UPDATE notifications SET outcome = :outcome, payment_id = :payment_id, applied_at = now()
WHERE id = :id
"""

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


@functools.cache
def pyformat(statement: str) -> str:
    """The statement with psycopg2's `%(name)s` parameters instead of `:name`."""
    return _NAMED.sub(r"%(\1)s", statement)
