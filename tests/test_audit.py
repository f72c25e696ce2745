"""The audit finds broken invariants, is quiet about healthy payments, and checks only what changed
since its last clean run unless asked for everything."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from flask import Flask
from flask_migrate import upgrade

from tests.support.config import app_config
from tests.support.midtrans import settle
from tests.support.plans import seeded_app, selects_sent, sequential_scans
from tests.support.simulator import Simulator
from tiketq import create_app
from tiketq.extensions import db
from tiketq.payments import audit
from tiketq.payments.models import (
    Delivery,
    MaintenanceRun,
    OutboxMessage,
    Payment,
    PaymentEvent,
    Refund,
    utcnow,
)


def pay(client: Any, simulator: Simulator, amount: int = 150_000) -> Payment:
    """A payment created through the API and settled at the simulator."""
    order_id = f"ORD-{uuid.uuid4().hex[:12].upper()}"
    created = client.post("/payments", json={"order_id": order_id, "amount": amount}).get_json()
    settle(client, simulator, created["gateway_order_id"])
    return db.session.get(Payment, uuid.UUID(created["id"]))


@pytest.fixture
def paid(client, midtrans_simulator) -> Payment:
    return pay(client, midtrans_simulator)


def rules(payment: Payment) -> list[str]:
    return [v.rule for v in audit.check([payment.id])]


def run_audit(app: Flask, *args: str) -> Result:
    """`flask payments audit` with `args`, as an operator runs it."""
    return app.test_cli_runner().invoke(args=["payments", "audit", *args])


def runs() -> list[MaintenanceRun]:
    """Every recorded audit run, oldest first."""
    db.session.expire_all()
    return list(db.session.scalars(sa.select(MaintenanceRun).order_by(MaintenanceRun.id)))


def backdate() -> None:
    """Make every payment, event and refund look an hour old, long before the next audit."""
    then = utcnow() - timedelta(hours=1)
    db.session.execute(sa.update(Payment).values(updated_at=then))
    db.session.execute(sa.update(PaymentEvent).values(created_at=then))
    db.session.execute(sa.update(Refund).values(updated_at=then))
    db.session.commit()


def clean_run(app: Flask) -> MaintenanceRun:
    """An audit that finds nothing: the start of the next incremental one."""
    result = run_audit(app)
    assert result.exit_code == 0, result.output
    return runs()[-1]


def test_healthy_payments_pass(app, client, paid, order_id):
    client.post("/payments", json={"order_id": order_id + "P", "amount": 10_000})
    assert audit.check(list(db.session.scalars(sa.select(Payment.id)))) == []
    assert run_audit(app, "--full").exit_code == 0


def test_a_status_its_history_cannot_explain_is_reported(paid):
    paid.status = "pending"
    db.session.commit()
    assert rules(paid) == ["history"]


def test_a_broken_event_chain_is_reported(paid):
    db.session.add(
        PaymentEvent(payment_id=paid.id, from_status="failed", to_status="success", source="test")
    )
    db.session.commit()
    assert "history" in rules(paid)


def test_a_payment_without_events_and_each_broken_link_are_reported_in_order(
    client, paid, order_id
):
    created = client.post("/payments", json={"order_id": order_id + "N", "amount": 10_000})
    bare = db.session.get(Payment, uuid.UUID(created.get_json()["id"]))
    db.session.execute(sa.delete(PaymentEvent).where(PaymentEvent.payment_id == bare.id))
    first = db.session.scalar(
        sa.select(PaymentEvent.id).where(PaymentEvent.payment_id == paid.id).limit(1)
    )
    later = sa.and_(PaymentEvent.payment_id == paid.id, PaymentEvent.id > first)
    db.session.execute(
        sa.update(PaymentEvent).where(later).values(from_status=None, to_status="pending")
    )
    db.session.commit()
    found = [(v.payment_id, v.rule, v.detail) for v in audit.check([paid.id, bare.id])]
    rewritten = db.session.scalars(sa.select(PaymentEvent.id).where(later).order_by("id"))
    expected = [
        (paid.id, "history", "status success but last event says pending"),
        *[(paid.id, "history", f"event {i} starts at None, not pending") for i in rewritten],
        (bare.id, "history", "no events at all"),
    ]
    assert found == sorted(expected, key=lambda v: v[0])


def test_a_success_without_a_queued_confirmation_is_reported(paid):
    db.session.execute(sa.delete(OutboxMessage).where(OutboxMessage.payment_id == paid.id))
    db.session.commit()
    assert rules(paid) == ["confirmation"]


def kill_confirmation(payment: Payment) -> None:
    """Dead-letter the payment's confirmation to the transaction service."""
    message = db.session.scalar(
        sa.select(OutboxMessage).where(OutboxMessage.payment_id == payment.id)
    )
    message.dispatched_at = utcnow()
    message.deliveries.append(
        Delivery(
            destination="transaction_service", url="http://ts/confirm", status="dead", attempts=11
        )
    )
    db.session.commit()


def test_a_dead_lettered_confirmation_is_reported(paid):
    kill_confirmation(paid)
    assert rules(paid) == ["confirmation"]


def test_a_paid_payment_without_paid_at_is_reported(paid):
    paid.paid_at = None
    db.session.commit()
    assert rules(paid) == ["paid_at"]


def test_the_command_exits_1_and_lists_violations(app, paid):
    paid.paid_at = None
    db.session.commit()
    result = run_audit(app)
    assert result.exit_code == 1
    assert "paid_at" in result.stdout and result.stdout.splitlines()[-1] == "1 violation(s)"


def test_with_no_clean_run_on_record_the_incremental_audit_checks_everything(app, paid):
    result = run_audit(app)
    assert result.exit_code == 0, result.output
    assert "no clean audit on record: checking every payment" in result.stderr
    assert result.stdout == "0 violation(s)\n"
    [run] = runs()
    assert run.job == "audit" and run.finished_at is not None
    assert run.summary["checked"] == 1 and run.summary["violations"] == 0
    assert run.summary["since"] is None


def test_the_incremental_audit_finds_a_status_changed_without_an_event_after_a_clean_run(app, paid):
    clean_run(app)
    paid.status = "pending"
    db.session.commit()
    result = run_audit(app)
    assert result.exit_code == 1
    assert re.match(rf"history +{paid.order_id} +{paid.id}  status pending", result.stdout)


def test_the_incremental_audit_finds_a_succeeded_refund_above_the_amount(app, paid):
    backdate()
    clean_run(app)
    db.session.add(
        Refund(
            payment_id=paid.id,
            refund_key=f"test-{uuid.uuid4()}",
            amount=paid.amount + 1,
            reason="test",
            status="succeeded",
        )
    )
    db.session.commit()
    result = run_audit(app)
    assert result.exit_code == 1
    assert f"{paid.amount + 1} refunded of {paid.amount}" in result.stdout
    assert "checked 1 payments changed since" in result.stderr


def test_the_incremental_audit_finds_a_confirmation_dead_lettered_after_a_clean_run(app, paid):
    backdate()
    clean_run(app)
    kill_confirmation(paid)
    result = run_audit(app)
    assert result.exit_code == 1
    assert "confirmation is dead-lettered" in result.stdout


def test_an_incremental_audit_after_a_clean_one_checks_only_the_changed_payments(
    app, client, midtrans_simulator, paid
):
    edited, remarked, untouched = (pay(client, midtrans_simulator) for _ in range(3))
    backdate()
    first = clean_run(app)
    assert first.summary["checked"] == 4
    edited.description = "changed by staff"
    remarked.remark("checked", source="test", data={})
    db.session.commit()
    result = run_audit(app)
    assert result.exit_code == 0, result.output
    since = first.started_at - audit.MARGIN
    assert f"checked 2 payments changed since {since:%Y-%m-%d %H:%M:%S} UTC" in result.stderr
    last = runs()[-1]
    assert last.job == "audit" and last.summary["checked"] == 2
    assert datetime.fromisoformat(last.summary["since"]) == since


def test_only_the_full_audit_sees_an_event_deleted_by_raw_sql(app, paid):
    backdate()
    clean_run(app)
    # Raw SQL that deletes a row changes no timestamp and adds no event.
    db.session.execute(
        sa.text("DELETE FROM payment_events WHERE id = (SELECT max(id) FROM payment_events)")
    )
    db.session.commit()
    incremental = run_audit(app)
    assert incremental.exit_code == 0
    assert "checked 0 payments" in incremental.stderr
    full = run_audit(app, "--full")
    assert full.exit_code == 1
    assert f"history       {paid.order_id}" in full.stdout
    assert runs()[-1].job == "audit-full"


def test_a_run_with_violations_is_not_a_clean_run(app, paid):
    clean = clean_run(app)
    paid.paid_at = None
    db.session.commit()
    assert run_audit(app).exit_code == 1
    again = run_audit(app)
    assert again.exit_code == 1 and "paid_at" in again.stdout
    assert audit.last_clean().id == clean.id
    *_, failed, latest = runs()
    assert failed.summary["violations"] == 1
    assert datetime.fromisoformat(latest.summary["since"]) == clean.started_at - audit.MARGIN


def test_the_full_audit_reports_how_many_it_checked_and_how_fast(app, client, paid, order_id):
    client.post("/payments", json={"order_id": order_id + "P", "amount": 10_000})
    clean_run(app)
    result = run_audit(app, "--full")
    assert result.exit_code == 0, result.output
    assert re.search(r"checked 2 payments in [\d.]+ s \([\d,]+ payments/s\)", result.stderr)
    run = runs()[-1]
    assert run.job == "audit-full" and run.summary["checked"] == 2
    assert run.summary["since"] is None and run.finished_at >= run.started_at


def test_the_audit_runs_on_sqlite(tmp_path: Path, midtrans_simulator: Simulator) -> None:
    app = create_app(
        app_config(
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'tiketq.sqlite3'}",
            MIDTRANS_BASE_URL=midtrans_simulator.url,
            WORKER_INBOX_THREADS=1,
        )
    )
    with app.app_context():
        upgrade()
        client = app.test_client()
        first, second, _healthy = (pay(client, midtrans_simulator) for _ in range(3))
        backdate()
        assert "checked 3 payments in" in run_audit(app, "--full").stderr
        first.paid_at = None
        db.session.execute(sa.delete(OutboxMessage).where(OutboxMessage.payment_id == first.id))
        second.status = "pending"
        db.session.add(
            Refund(
                payment_id=second.id,
                refund_key="sqlite",
                amount=second.amount + 1,
                reason="test",
                status="succeeded",
            )
        )
        db.session.commit()
        result = run_audit(app)
        assert result.exit_code == 1
        assert "checked 2 payments changed since" in result.stderr
        found = sorted(
            (line.split()[0], line.split()[2])
            for line in result.stdout.splitlines()
            if "violation(s)" not in line
        )
        assert found == sorted(
            [
                ("paid_at", str(first.id)),
                ("confirmation", str(first.id)),
                ("history", str(second.id)),
                ("refunds", str(second.id)),
            ]
        )
        db.engine.dispose()


PLANS_DATABASE_URL = f"postgresql+psycopg2://postgres@127.0.0.1:5432/tiketq_audit_{os.getpid()}"
# The tables that grow with every payment; a sequential scan of any of them grows with it.
# Refunds grow too, but a few per hundred payments: at the seed's size the planner rightly
# reads the table whole to sum a batch's; the selection still must reach them by index.
GROWING = {"payments", "payment_events", "outbox", "deliveries"}
HISTORY = 60_000

# A year of ended payments, audited clean ten minutes ago; since then, a few changed.
SEED = """
INSERT INTO payments (id, order_id, attempt, gateway_order_id, amount, currency, status,
    payment_method, customer, items, expires_at, paid_at, refunded_amount, payment_details,
    needs_review, checks, request_fingerprint, created_at, updated_at)
SELECT md5('p' || n)::uuid, 'ORD-' || n, 1, 'ORD-' || n, 150000, 'IDR',
    CASE WHEN n % 10 < 7 THEN 'success' ELSE 'expired' END, 'bank_transfer', '{}', '[]',
    at + interval '1 day', CASE WHEN n % 10 < 7 THEN at + interval '5 minutes' END, 0, '{}',
    false, 1, md5('f' || n), at, at + interval '5 minutes'
FROM (SELECT n, now() - interval '1 hour' - n * interval '500 seconds' AS at
      FROM generate_series(1, :history) AS n) AS history;
INSERT INTO payment_events (payment_id, from_status, to_status, source, data, created_at)
SELECT id, NULL, 'pending', 'api', '{}', created_at FROM payments;
INSERT INTO payment_events (payment_id, from_status, to_status, source, data, created_at)
SELECT id, 'pending', status, 'reconcile', '{}', updated_at FROM payments;
INSERT INTO outbox (event_id, payment_id, event_type, payload, created_at, dispatched_at)
SELECT md5('o' || id::text)::uuid, id, 'payment.succeeded', '{}', updated_at, updated_at
FROM payments WHERE status = 'success';
INSERT INTO deliveries (message_id, destination, url, status, attempts, next_attempt_at,
    delivered_at, created_at)
SELECT id, 'transaction_service', 'http://127.0.0.1:9/',
    CASE WHEN id % 2000 = 0 THEN 'dead' ELSE 'delivered' END, 1, created_at, created_at,
    created_at
FROM outbox;
INSERT INTO refunds (payment_id, refund_key, amount, reason, status, gateway_response,
    created_at, updated_at)
SELECT id, 'r-' || id, 1000, 'test', 'succeeded', '{}', updated_at, updated_at
FROM payments WHERE status = 'success' AND order_id LIKE '%0';
INSERT INTO maintenance_runs (job, started_at, finished_at, summary)
SELECT 'audit', now() - interval '10 minutes', now() - interval '9 minutes',
    json_build_object('checked', :history, 'violations', 0, 'since', NULL,
        'last_event_id', max(id))
FROM payment_events;

UPDATE payments SET updated_at = now() - interval '1 minute' WHERE order_id LIKE '%777';
INSERT INTO payment_events (payment_id, from_status, to_status, status_detail, source, data,
    created_at)
SELECT id, status, status, 'checked', 'staff', '{}', now() - interval '1 minute'
FROM payments WHERE order_id LIKE '%555';
UPDATE refunds SET updated_at = now() - interval '1 minute' WHERE refund_key LIKE '%aa';

ANALYZE;
"""

# What the seed changed after its clean run, by the marks it left, and the dead confirmations.
CHANGED = """
SELECT count(DISTINCT p.id) FROM payments AS p
WHERE p.order_id LIKE '%777' OR p.order_id LIKE '%555'
    OR p.id IN (SELECT payment_id FROM refunds WHERE refund_key LIKE '%aa')
    OR p.id IN (SELECT o.payment_id FROM outbox AS o JOIN deliveries AS d ON d.message_id = o.id
                WHERE d.status = 'dead')
"""
DEAD = HISTORY * 7 // 10 // 2000


@pytest.fixture(scope="module")
def seeded(midtrans_simulator: Simulator) -> Iterator[Flask]:
    """An app on a database of its own, migrated and seeded with a year of history."""
    with seeded_app(
        PLANS_DATABASE_URL,
        SEED.replace(":history", str(HISTORY)),
        MIDTRANS_BASE_URL=midtrans_simulator.url,
    ) as app:
        yield app


@dataclass
class Audited:
    """An incremental audit of the seeded database, and the tables each of its reads scans."""

    result: Result
    # (statement, tables it reads sequentially) for every SELECT it sent.
    scans: list[tuple[str, set[str]]]


@pytest.fixture(scope="module")
def audited(seeded: Flask) -> Audited:
    with seeded.app_context():
        with selects_sent() as statements:
            result = run_audit(seeded)
        scans = [
            (statement, sequential_scans(statement, parameters))
            for statement, parameters in statements
        ]
    return Audited(result, scans)


@pytest.mark.slow
def test_the_incremental_audit_checks_what_changed_since_the_last_clean_run(
    seeded: Flask, audited: Audited
) -> None:
    with seeded.app_context():
        expected = db.session.scalar(sa.text(CHANGED))
    assert f"checked {expected} payments changed since" in audited.result.stderr
    # The dead confirmations are still dead: that is all there is to report.
    assert audited.result.stdout.splitlines()[-1] == f"{DEAD} violation(s)"


@pytest.mark.slow
def test_the_incremental_selection_reads_every_table_through_an_index(audited: Audited) -> None:
    selection = [
        (statement, tables)
        for statement, tables in audited.scans
        if " UNION " in statement or "ORDER BY payment_events.id DESC" in statement
    ]
    assert len(selection) == 2
    assert [tables for _, tables in selection] == [set(), set()], selection


@pytest.mark.slow
def test_the_incremental_checks_read_growing_tables_only_through_indexes(
    audited: Audited,
) -> None:
    assert len(audited.scans) > 5
    found = [
        f"{sorted(tables & GROWING)} in:\n{statement}"
        for statement, tables in audited.scans
        if tables & GROWING
    ]
    assert not found, "\n\n".join(found)
