"""`flask payments import-legacy` on a database holding the replaced service's payments table."""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask

from tests.support.config import SERVER_KEY, TEST_DATABASE_URL
from tests.support.payments import open_payment
from tiketq import worker
from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.outbound import current_outbound
from tiketq.payments import legacy_import
from tiketq.payments.legacy_import import LegacyRow, Unimportable
from tiketq.payments.models import Delivery, OutboxMessage, Payment, PaymentEvent, utcnow
from tiketq.payments.status import PaymentStatus

# Every test builds the replaced service's tables and imports with real commits.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# The replaced service's table as PostgreSQL reports it, next to the project (as in issue 15).
LEGACY_DDL = ROOT / "tests" / "fixtures" / "tiketq-schema" / "legacy-payment-service.sql"
AMOUNT = 150_000
STATUSES = ("PENDING", "PROCESSING", "SUCCESS", "FAILED", "CANCELED", "REFUNDED", "EXPIRED")
# The old service's times, naive: ten minutes ago in UTC.
CREATED = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(minutes=10)


def _admin(url: str, statement: str) -> None:
    engine = sa.create_engine(
        sa.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        connection.execute(sa.text(statement))
    engine.dispose()


def _legacy_database(schema: str) -> Iterator[str]:
    """A database of this run's own holding the old table (in `schema`), dropped afterwards."""
    url = sa.make_url(TEST_DATABASE_URL).set(database=f"tiketq_legacy_{os.getpid()}")
    text = url.render_as_string(hide_password=False)
    _admin(text, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    _admin(text, f'CREATE DATABASE "{url.database}"')
    ddl = LEGACY_DDL.read_text().replace("public.", f"{schema}.")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        connection.exec_driver_sql(ddl)
    engine.dispose()
    try:
        yield text
    finally:
        _admin(text, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


@pytest.fixture
def legacy() -> Iterator[str]:
    """The old service's database, its table in `public`."""
    yield from _legacy_database("public")


def legacy_row(order_id: str, status: str, amount: str = f"{AMOUNT}.00", **fields: Any) -> dict:
    """One row as the old service wrote it: naive times, a Snap token and its redirect URL."""
    token = str(uuid.uuid4())
    return {
        "payment_id": f"payment-{order_id}",
        "order_id": order_id,
        "status": status,
        "amount": Decimal(amount),
        "payment_method": "bank_transfer",
        "transaction_time": CREATED,
        "expiry_time": None,
        "payment_url": f"https://app.sandbox.midtrans.com/snap/v4/redirection/{token}",
        "token": token,
        "redirect_url": f"https://app.sandbox.midtrans.com/snap/v4/redirection/{token}",
        "qr_code_url": None,
        "virtual_account_number": None,
        "bank_code": None,
        "additional_data": json.dumps({"token": token, "expiry_duration": 24}),
        "created_at": CREATED,
        "updated_at": CREATED + timedelta(minutes=1),
        **fields,
    }


def insert(url: str, rows: list[dict], schema: str = "public") -> None:
    engine = sa.create_engine(url)
    columns = ", ".join(rows[0])
    values = ", ".join(
        f"CAST(:{name} AS {schema}.paymentstatus)" if name == "status" else f":{name}"
        for name in rows[0]
    )
    with engine.begin() as connection:
        connection.execute(
            sa.text(f"INSERT INTO {schema}.payments ({columns}) VALUES ({values})"), rows
        )
    engine.dispose()


def new_order() -> str:
    return f"ORD-{uuid.uuid4().hex[:12].upper()}"


def run_import(app: Flask, url: str, *options: str) -> str:
    result = app.test_cli_runner().invoke(
        args=["payments", "import-legacy", "--from", url, *options]
    )
    assert result.exit_code == 0, result.output
    return result.output


def imported(app: Flask, order_id: str) -> tuple[Payment, list[PaymentEvent], list[OutboxMessage]]:
    with app.app_context():
        payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order_id))
        assert payment is not None, order_id
        events = list(
            db.session.scalars(sa.select(PaymentEvent).where(PaymentEvent.payment_id == payment.id))
        )
        messages = list(
            db.session.scalars(
                sa.select(OutboxMessage).where(OutboxMessage.payment_id == payment.id)
            )
        )
        db.session.expunge_all()
        return payment, events, messages


def counts(app: Flask) -> tuple[int, ...]:
    with app.app_context():
        return tuple(
            db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (Payment, PaymentEvent, OutboxMessage, Delivery)
        )


@pytest.fixture
def every_status(legacy) -> dict[str, str]:
    """One old row per status and one of a fractional amount: {status or "FRACTION": order id}."""
    orders = {status: new_order() for status in (*STATUSES, "FRACTION")}
    rows = [legacy_row(orders[status], status) for status in STATUSES]
    rows.append(legacy_row(orders["FRACTION"], "PENDING", amount="150000.50"))
    insert(legacy, rows)
    return orders


# The command on the old table.


def test_every_status_is_imported_and_a_fractional_amount_is_skipped(
    committing_app, legacy, every_status
):
    before = utcnow()
    output = run_import(committing_app, legacy)

    assert "imported: 7" in output
    assert "already present: 0" in output
    assert "skipped: 1" in output
    fraction = every_status["FRACTION"]
    assert f"payment-{fraction}: fractional amount 150000.50" in output
    with committing_app.app_context():
        assert db.session.scalar(sa.select(Payment).where(Payment.order_id == fraction)) is None

    for name in STATUSES:
        order_id = every_status[name]
        payment, events, messages = imported(committing_app, order_id)
        status = PaymentStatus(name.lower())
        assert payment.status is status
        assert (payment.amount, payment.currency) == (AMOUNT, "IDR")
        # Midtrans knows the old service's transaction by the caller's order id: attempt 1.
        assert (payment.gateway_order_id, payment.attempt) == (order_id, 1)
        assert payment.payment_method == "bank_transfer"
        assert payment.snap_token and payment.snap_redirect_url.endswith(payment.snap_token)
        # Naive times are UTC; the old row's expiry_duration (24 h) gives the time to pay.
        assert payment.created_at == CREATED.replace(tzinfo=UTC)
        assert payment.expires_at == payment.created_at + timedelta(hours=24)
        [event] = events
        assert (event.source, event.from_status, event.to_status) == ("import", None, status)
        assert event.data["legacy_payment_id"] == f"payment-{order_id}"
        assert event.data["legacy_status"] == name
        if name in ("PENDING", "PROCESSING"):
            # Open: the worker asks Midtrans at once.
            assert before <= payment.next_check_at <= utcnow()
            assert payment.paid_at is None and messages == []
        elif name in ("SUCCESS", "REFUNDED"):
            assert payment.next_check_at is None
            # No settlement_time in the old row: its last update is when it was seen paid.
            assert payment.paid_at == (CREATED + timedelta(minutes=1)).replace(tzinfo=UTC)
            # The old service confirmed it: recorded as done, never sent again.
            [message] = messages
            assert message.event_type == "payment.succeeded"
            assert message.dispatched_at is not None
            assert message.payload["confirmed_by"] == "legacy payment service"
        else:
            assert payment.next_check_at is None and payment.paid_at is None
            assert messages == []
        assert payment.refunded_amount == (AMOUNT if name == "REFUNDED" else 0)

    with committing_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 0
    # The imported payments keep every invariant the audit checks.
    audit = committing_app.test_cli_runner().invoke(args=["payments", "audit"])
    assert audit.exit_code == 0, audit.output


def test_the_old_id_resolves_through_the_api(committing_app, legacy, every_status):
    run_import(committing_app, legacy)
    order_id = every_status["PENDING"]
    payment, _events, _messages = imported(committing_app, order_id)

    response = committing_app.test_client().get(f"/payments/payment-{order_id}")

    assert response.status_code == 200
    body = response.get_json()
    assert (body["id"], body["order_id"], body["status"]) == (str(payment.id), order_id, "pending")
    assert body["amount"] == AMOUNT and body["snap_token"] == payment.snap_token
    # The traveller still paying opens the same Snap session from our checkout page.
    page = committing_app.test_client().get(f"/checkout/{payment.id}")
    assert page.status_code == 200 and payment.snap_token in page.get_data(as_text=True)


def test_a_second_run_changes_nothing(committing_app, legacy, every_status):
    run_import(committing_app, legacy)
    before = counts(committing_app)

    output = run_import(committing_app, legacy)

    assert "imported: 0" in output
    assert "already present: 7" in output
    assert "skipped: 1" in output
    assert counts(committing_app) == before


def test_a_dry_run_reports_the_same_and_writes_nothing(committing_app, legacy, every_status):
    output = run_import(committing_app, legacy, "--dry-run")

    assert "dry run: nothing written" in output
    assert "imported: 7" in output and "skipped: 1" in output
    assert counts(committing_app) == (0, 0, 0, 0)


def test_an_order_that_has_a_payment_here_is_skipped(committing_app, legacy):
    ours = open_payment(committing_app)
    insert(legacy, [legacy_row(ours.order_id, "PENDING")])

    output = run_import(committing_app, legacy)

    assert "imported: 0" in output
    assert f"payment-{ours.order_id}: order already has a payment here" in output
    with committing_app.app_context():
        assert (
            db.session.scalar(sa.select(sa.func.count()).where(Payment.order_id == ours.order_id))
            == 1
        )


def test_the_schema_option_reads_another_schema(committing_app):
    for url in _legacy_database("old_payments"):
        order_id = new_order()
        insert(url, [legacy_row(order_id, "FAILED")], schema="old_payments")

        output = run_import(committing_app, url, "--schema", "old_payments")

        assert "imported: 1" in output
        assert imported(committing_app, order_id)[0].status is PaymentStatus.FAILED


def test_a_missing_table_is_an_error_that_writes_nothing(committing_app, legacy):
    result = committing_app.test_cli_runner().invoke(
        args=["payments", "import-legacy", "--from", legacy, "--schema", "nowhere"]
    )

    assert result.exit_code != 0
    assert "nowhere.payments" in result.output
    assert counts(committing_app) == (0, 0, 0, 0)


# After the import: the worker learns the truth from Midtrans, and confirms once.


def snap_transaction(simulator_url: str, order_id: str) -> dict[str, str]:
    """What the old service did: open a Snap transaction for the order; its token and URL."""
    body = {"transaction_details": {"order_id": order_id, "gross_amount": AMOUNT}}
    response = requests.post(
        f"{simulator_url}/snap/v1/transactions", json=body, auth=(SERVER_KEY, ""), timeout=5
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_an_imported_pending_payment_is_reconciled_and_confirmed_a_paid_one_is_not(
    worker_app, legacy, midtrans_simulator, receiver
):
    pending, paid = new_order(), new_order()
    snap = snap_transaction(midtrans_simulator.url, pending)
    insert(
        legacy,
        [
            legacy_row(pending, "PENDING", token=snap["token"], redirect_url=snap["redirect_url"]),
            legacy_row(paid, "SUCCESS"),
        ],
    )
    run_import(worker_app, legacy)
    midtrans_simulator.pay(pending, "bca_va", "settlement")

    with worker_app.app_context():
        done = worker.run_once(current_gateway(), current_outbound())

    assert done["reconciled"] == 1
    payment, events, _messages = imported(worker_app, pending)
    assert payment.status is PaymentStatus.SUCCESS and payment.paid_at is not None
    assert [(e.source, e.to_status) for e in events] == [
        ("import", "pending"),
        ("reconcile", "success"),
    ]
    confirmations = [r.path for r in receiver.received if r.path.startswith("/transactions/")]
    # The imported success was confirmed by the old service: only the new one goes out.
    assert confirmations == [f"/transactions/payments/{pending}/confirm"]


def test_a_notification_for_an_imported_payment_is_applied(
    worker_app, legacy, midtrans_simulator, receiver
):
    order_id = new_order()
    snap = snap_transaction(midtrans_simulator.url, order_id)
    insert(legacy, [legacy_row(order_id, "PENDING", token=snap["token"])])
    run_import(worker_app, legacy)
    midtrans_simulator.pay(order_id, "bca_va", "settlement")

    body = midtrans_simulator.notification(order_id)
    response = worker_app.test_client().post("/payments/webhook", json=body)
    assert response.status_code == 200
    with worker_app.app_context():
        done = worker.apply_inbox(current_gateway())

    assert done["applied"] == 1
    assert imported(worker_app, order_id)[0].status is PaymentStatus.SUCCESS


# The mapping, row by row.


def row(status: str = "PENDING", order_id: str | None = None, **fields: Any) -> LegacyRow:
    full = legacy_row(order_id or new_order(), status, **fields)
    return LegacyRow(**{f.name: full[f.name] for f in dataclasses.fields(LegacyRow)})


def test_unknown_statuses_and_unfit_rows_are_refused_with_a_reason():
    for fields, reason in (
        ({"status": "COMPLETED"}, "unknown status COMPLETED"),
        ({"amount": Decimal("0.00")}, "amount 0.00 is not positive"),
        ({"amount": Decimal("99.99")}, "fractional amount 99.99"),
        ({"order_id": "ORD~2"}, "order id"),
        ({"token": "x" * 65}, "token longer than 64"),
    ):
        with pytest.raises(Unimportable, match=reason):
            legacy_import.carry(row(**fields))


def test_the_time_to_pay_comes_from_the_column_then_the_duration_then_an_hour():
    created = CREATED.replace(tzinfo=UTC)
    column = CREATED + timedelta(hours=3)
    assert legacy_import.carry(row(expiry_time=column)).expires_at == column.replace(tzinfo=UTC)
    # The old service's metadata expiry_time was computed in minutes while Snap got hours.
    minutes = {"expiry_duration": 2, "expiry_time": (CREATED + timedelta(minutes=2)).isoformat()}
    carried = legacy_import.carry(row(additional_data=json.dumps(minutes)))
    assert carried.expires_at == created + timedelta(hours=2)
    for nothing in (None, "{}", "not json"):
        carried = legacy_import.carry(row(additional_data=nothing))
        assert carried.expires_at == created + timedelta(hours=1)


def test_a_paid_row_takes_midtrans_settlement_time_in_wib():
    extra = json.dumps({"settlement_time": "2026-01-05 14:30:00"})
    carried = legacy_import.carry(row(status="SUCCESS", additional_data=extra))
    assert carried.paid_at == datetime(2026, 1, 5, 7, 30, tzinfo=UTC)
    assert carried.event_data["paid_at_from"] == "settlement_time"


def test_a_row_without_redirect_url_keeps_its_payment_url():
    carried = legacy_import.carry(row(redirect_url=None, payment_url="https://snap.example/t"))
    assert carried.snap_redirect_url == "https://snap.example/t"


def test_two_old_rows_of_one_order_import_one_in_a_dry_run_too(committing_app, legacy):
    order_id = new_order()
    later = CREATED + timedelta(minutes=5)
    rows = [
        legacy_row(order_id, "FAILED"),
        legacy_row(order_id, "PENDING", payment_id="other", created_at=later),
    ]
    insert(legacy, rows)

    for options in (["--dry-run"], []):
        output = run_import(committing_app, legacy, *options)

        assert "imported: 1 (failed 1)" in output
        assert "  other: order already has a payment here" in output
