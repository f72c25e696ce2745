"""TiketQ's shared database: our schema, beside the platform's other tables, as our own role."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy.exc import ProgrammingError

from tests.support.config import CLIENT_KEY, SERVER_KEY, TEST_DATABASE_URL, app_config
from tests.support.database import admin_execute
from tests.support.simulator import Simulator
from tiketq import create_app
from tiketq.config import ConfigError
from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.outbound import current_outbound
from tiketq.worker import run_once

# Each test builds scratch databases and migrates them.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# Copies of ../shared/reference/tiketq-schema, as PostgreSQL reports the other services' tables.
REFERENCE = ROOT / "tests" / "fixtures" / "tiketq-schema"
TRANSACTION_SERVICE_DDL = REFERENCE / "transaction-service.sql"
LEGACY_PAYMENT_SERVICE_DDL = REFERENCE / "legacy-payment-service.sql"
ROLES_SQL = ROOT / "docs" / "database-roles.sql"
STAFF_KEY = "shared-database-staff-key"
OUR_TABLES = {
    "alembic_version",
    "payments",
    "payment_events",
    "notifications",
    "outbox",
    "refunds",
    "deliveries",
    "worker_heartbeats",
    "staff_sessions",
    "maintenance_runs",
}
# Settings of the test runner's environment that would point the worker somewhere else.
CONFIGURING = ("DATABASE_", "POSTGRES_", "MIDTRANS_", "PROMETHEUS_", "WORKER_", "PG")


@contextmanager
def fresh_database(suffix: str) -> Iterator[str]:
    """An empty database of this run's own, dropped afterwards; yields its URL."""
    url = sa.make_url(TEST_DATABASE_URL)
    url = url.set(database=f"{url.database}_{suffix}")
    admin_execute(
        TEST_DATABASE_URL,
        f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)',
        f'CREATE DATABASE "{url.database}"',
    )
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        admin_execute(TEST_DATABASE_URL, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


def run_sql(url: str, statement: str, params: dict[str, Any] | None = None) -> list[Any]:
    """Run a statement (or a whole DDL script) as the URL's user, in autocommit; its rows."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            result = connection.exec_driver_sql(statement, params or ())
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


def load_ddl(url: str, path: Path) -> None:
    """Create another service's tables as PostgreSQL reported them."""
    run_sql(url, path.read_text(encoding="utf-8"))


def service(url: str, simulator: Simulator, **overrides: Any) -> Flask:
    """Our app on that database, with a staff key to refund with."""
    return create_app(
        app_config(
            SQLALCHEMY_DATABASE_URI=url,
            MIDTRANS_BASE_URL=simulator.url,
            ADMIN_API_KEYS=[f"ops={STAFF_KEY}"],
            TRANSACTION_SERVICE_URL="",
            **overrides,
        )
    )


def migrate(app: Flask) -> None:
    """`flask db upgrade` for that app."""
    with app.app_context():
        upgrade()
        db.engine.dispose()


def dispose(app: Flask) -> None:
    """Close the app's pooled connections, so that its database can be dropped."""
    with app.app_context():
        db.engine.dispose()


def create_payment(app: Flask, amount: int = 275_000) -> dict[str, Any]:
    """Create a payment through the API, as the transaction service does."""
    order_id = f"ORD-{uuid.uuid4().hex[:12].upper()}"
    response = app.test_client().post("/payments", json={"order_id": order_id, "amount": amount})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def settle(app: Flask, simulator: Simulator, payment: dict[str, Any]) -> None:
    """The traveller pays: Midtrans's notification is stored through the webhook."""
    simulator.pay(payment["order_id"], "gopay", "settlement")
    body = simulator.notification(payment["order_id"])
    response = app.test_client().post("/payments/webhook", json=body)
    assert response.status_code == 200, response.get_json()


def work(app: Flask) -> dict[str, int]:
    """One round of the worker in this process."""
    with app.app_context():
        try:
            return run_once(current_gateway(), current_outbound())
        finally:
            db.session.remove()


def read_payment(app: Flask, payment_id: str) -> dict[str, Any]:
    """A payment as the API answers it."""
    response = app.test_client().get(f"/payments/{payment_id}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def refund(app: Flask, payment_id: str) -> dict[str, Any]:
    """Refund a payment in full through the staff API."""
    response = app.test_client().post(
        f"/payments/{payment_id}/refund",
        json={"reason": "Flight canceled"},
        headers={"Authorization": f"Bearer {STAFF_KEY}"},
    )
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


def pay_and_refund(app: Flask, simulator: Simulator) -> str:
    """Create, pay (applied by the worker) and refund a payment of ours; its id."""
    payment = create_payment(app)
    settle(app, simulator, payment)
    assert work(app)["applied"] == 1
    assert read_payment(app, payment["id"])["status"] == "success"
    refund(app, payment["id"])
    assert read_payment(app, payment["id"])["status"] == "refunded"
    return payment["id"]


def transaction_service_refund(url: str) -> None:
    """What failed before our own schema: the transaction service records a refund."""
    (transaction_id,) = run_sql(
        url,
        "INSERT INTO public.transactions (email, order_number, transaction_type, amount, currency,"
        " status) VALUES ('sari@example.co.id', %s, 'PAYMENT', 275000, 'IDR', 'COMPLETED')"
        " RETURNING id",
        (f"ORD-{uuid.uuid4().hex[:12].upper()}",),
    )[0]
    run_sql(
        url,
        "INSERT INTO public.refunds (transaction_id, amount, reason, status)"
        " VALUES (%s, 275000, 'Flight canceled', 'PENDING')",
        (transaction_id,),
    )


def objects_in(url: str, schema: str) -> dict[str, set[str]]:
    """Tables, indexes, functions and sequences the catalogs show in a schema."""
    queries = {
        "tables": "SELECT tablename FROM pg_tables WHERE schemaname = %s",
        "indexes": "SELECT indexname FROM pg_indexes WHERE schemaname = %s",
        "functions": "SELECT p.proname FROM pg_proc p JOIN pg_namespace n"
        " ON n.oid = p.pronamespace WHERE n.nspname = %s",
        "sequences": "SELECT sequencename FROM pg_sequences WHERE schemaname = %s",
        "types": "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        " WHERE n.nspname = %s AND t.typtype IN ('e', 'c', 'd') AND t.typrelid = 0",
    }
    return {
        kind: {row[0] for row in run_sql(url, query, (schema,))} for kind, query in queries.items()
    }


def row_counts(url: str, schema: str) -> dict[str, int]:
    """Rows of each of our tables in that schema."""
    return {
        table: run_sql(url, f"SELECT count(*) FROM {schema}.{table}")[0][0]
        for table in sorted(OUR_TABLES)
    }


# Everything in our schema, nothing in public.


def test_after_upgrade_nothing_of_ours_is_in_public(database):
    public = objects_in(database, "public")
    assert public == {kind: set() for kind in public}
    ours = objects_in(database, "payment")
    assert ours["tables"] == OUR_TABLES
    assert {"pk_payments", "uq_payments_order_id_counted", "ix_notifications_waiting"} <= ours[
        "indexes"
    ]
    assert ours["functions"] == {"notify_inbox"}
    triggers = run_sql(
        database,
        "SELECT c.relnamespace::regnamespace::text FROM pg_trigger t"
        " JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname = 'notifications_wake_worker'",
    )
    assert triggers == [("payment",)]


def test_a_schema_name_that_is_not_an_identifier_is_refused():
    bad_names = ("Payment", "pay-ment", "payment;drop", "1payment", "pg_toast", "user", "a" * 64)
    for bad in bad_names:
        with pytest.raises(ConfigError, match="DATABASE_SCHEMA"):
            create_app(app_config(DATABASE_SCHEMA=bad))


def test_another_schema_name_holds_everything_instead(midtrans_simulator):
    with fresh_database("otherschema") as url:
        app = service(url, midtrans_simulator, DATABASE_SCHEMA="tiketq_pay")
        migrate(app)
        try:
            assert objects_in(url, "tiketq_pay")["tables"] == OUR_TABLES
            assert objects_in(url, "public")["tables"] == set()
            assert read_payment(app, create_payment(app)["id"])["status"] == "pending"
        finally:
            dispose(app)


# Both start orders, beside the transaction service's tables and enum types.


@pytest.mark.parametrize("transaction_service_first", [True, False], ids=["before", "after"])
def test_both_start_orders_work_beside_the_transaction_service(
    midtrans_simulator, transaction_service_first
):
    with fresh_database("startorder") as url:
        app = service(url, midtrans_simulator)
        try:
            if transaction_service_first:
                load_ddl(url, TRANSACTION_SERVICE_DDL)
            migrate(app)
            if not transaction_service_first:
                load_ddl(url, TRANSACTION_SERVICE_DDL)

            transaction_service_refund(url)
            payment_id = pay_and_refund(app, midtrans_simulator)

            assert run_sql(url, "SELECT count(*) FROM public.refunds")[0][0] == 1
            ours = run_sql(url, "SELECT payment_id::text FROM payment.refunds")
            assert ours == [(payment_id,)]
            public = objects_in(url, "public")
            assert "paymentstatus" in public["types"]
            assert public["tables"] == {"orders", "refunds", "transaction_payments", "transactions"}
        finally:
            dispose(app)


def test_our_migrations_leave_the_replaced_services_payments_untouched(midtrans_simulator):
    # Its own database: its enum paymentstatus collides with the transaction service's.
    with fresh_database("legacy") as url:
        load_ddl(url, LEGACY_PAYMENT_SERVICE_DDL)
        run_sql(
            url,
            "INSERT INTO public.payments (payment_id, order_id, status, amount, payment_method,"
            " transaction_time, created_at, updated_at) VALUES ('payment-ORD-LEGACY01',"
            " 'ORD-LEGACY01', 'PENDING', 275000.00, 'bank_transfer', now(), now(), now())",
        )
        before = objects_in(url, "public")
        app = service(url, midtrans_simulator)
        try:
            migrate(app)
            assert objects_in(url, "public") == before
            legacy = run_sql(url, "SELECT payment_id, status::text FROM public.payments")
            assert legacy == [("payment-ORD-LEGACY01", "PENDING")]
            assert read_payment(app, create_payment(app)["id"])["status"] == "pending"
        finally:
            dispose(app)


# A deployment from before DATABASE_SCHEMA, with everything in public, moves into the schema.


def test_a_deployment_in_public_moves_into_the_schema_with_everything_in_it(midtrans_simulator):
    with fresh_database("move") as url:
        # DATABASE_SCHEMA=public runs migrations 0001-0007 exactly as deployments ran them.
        old = service(url, midtrans_simulator, DATABASE_SCHEMA="public")
        migrate(old)
        # Another service's table in public, which must stay where it is.
        run_sql(url, "CREATE TABLE public.orders (id integer PRIMARY KEY)")
        paid_id = pay_and_refund(old, midtrans_simulator)
        open_id = create_payment(old, amount=150_000)["id"]
        paid, still_open = read_payment(old, paid_id), read_payment(old, open_id)
        dispose(old)
        counts = row_counts(url, "public")
        assert all(counts[t] for t in ("payments", "payment_events", "notifications", "outbox"))

        new = service(url, midtrans_simulator)
        try:
            migrate(new)
            assert row_counts(url, "payment") == counts
            assert objects_in(url, "public")["tables"] == {"orders"}
            assert objects_in(url, "public")["functions"] == set()
            assert objects_in(url, "payment")["functions"] == {"notify_inbox"}
            assert read_payment(new, paid_id) == paid
            assert read_payment(new, open_id) == still_open
            # Sequences and the inbox trigger came along: the next rows still get ids, and the
            # next payment is paid through the worker as before.
            assert pay_and_refund(new, midtrans_simulator)
            migrate(new)  # a second upgrade has nothing left to move
        finally:
            dispose(new)


def test_a_foreign_alembic_version_in_public_is_not_taken_for_ours(midtrans_simulator):
    with fresh_database("foreign") as url:
        load_ddl(url, LEGACY_PAYMENT_SERVICE_DDL)
        # Another service's Alembic, even at a revision id like ours.
        run_sql(url, "CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY)")
        run_sql(url, "INSERT INTO public.alembic_version VALUES ('0003')")
        before = objects_in(url, "public")
        app = service(url, midtrans_simulator)
        try:
            migrate(app)
            assert objects_in(url, "public") == before
            assert run_sql(url, "SELECT version_num FROM public.alembic_version") == [("0003",)]
            assert objects_in(url, "payment")["tables"] == OUR_TABLES
        finally:
            dispose(app)


# Least privilege: our role owns the payment schema and nothing else.


@pytest.fixture
def payment_role() -> Iterator[str]:
    """A role name of this test's own; the role is dropped afterwards (after its database)."""
    role = f"tiketq_payment_{uuid.uuid4().hex[:8]}"
    yield role
    admin_execute(TEST_DATABASE_URL, f'DROP ROLE IF EXISTS "{role}"')


def create_role(url: str, role: str) -> None:
    """Run docs/database-roles.sql with psql as the superuser, as the README says."""
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.run(
        ["psql", dsn, "-X", "-q", "-v", f"role={role}", "-v", "schema=payment", "-f", ROLES_SQL],
        check=True,
        capture_output=True,
        text=True,
    )


def as_role(url: str, role: str) -> str:
    """The same database, connected as the role."""
    return sa.make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def flask_command(url: str, simulator: Simulator, *args: str) -> subprocess.CompletedProcess:
    """`flask --app wsgi ARGS` in its own process, on that database; its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIGURING)}
    env.update(
        DATABASE_URL=url,
        MIDTRANS_SERVER_KEY=SERVER_KEY,
        MIDTRANS_CLIENT_KEY=CLIENT_KEY,
        MIDTRANS_SIMULATOR="true",
        MIDTRANS_BASE_URL=simulator.url,
        TRANSACTION_SERVICE_URL="",
        SECRET_KEY="shared-database-test",
        METRICS_ENABLED="false",
    )
    flask = Path(sys.executable).parent / "flask"
    return subprocess.run(
        [str(flask), "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_worker_once(url: str, simulator: Simulator) -> None:
    """`flask payments worker --once`, the worker process's round, on that database."""
    finished = flask_command(url, simulator, "payments", "worker", "--once")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "permission denied" not in finished.stdout + finished.stderr


def test_our_role_runs_the_service_but_cannot_touch_the_other_services_tables(
    midtrans_simulator, payment_role
):
    with fresh_database("role") as url:
        load_ddl(url, TRANSACTION_SERVICE_DDL)  # owned by postgres, as another service's
        transaction_service_refund(url)
        create_role(url, payment_role)
        ours = as_role(url, payment_role)
        app = service(ours, midtrans_simulator)
        try:
            migrate(app)
            payment = create_payment(app)
            settle(app, midtrans_simulator, payment)
            run_worker_once(ours, midtrans_simulator)
            assert read_payment(app, payment["id"])["status"] == "success"

            owners = run_sql(
                url, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = %s", ("payment",)
            )
            assert owners == [(payment_role,)]
            for statement in (
                "SELECT count(*) FROM public.transactions",
                "SELECT count(*) FROM public.refunds",
                "INSERT INTO public.refunds (transaction_id, amount, reason, status)"
                " VALUES (1, 1, 'x', 'PENDING')",
                "UPDATE public.orders SET total = 0",
                "CREATE TABLE public.intruder (id integer)",
            ):
                with pytest.raises(ProgrammingError, match="permission denied"):
                    run_sql(ours, statement)
            # Even a connection without the service's options (psql, a pooler) resolves
            # unqualified names in our schema only: public's refunds is not even seen.
            assert run_sql(ours, "SELECT current_schemas(false)") == [(["payment"],)]
            same = "SELECT 'refunds'::regclass = 'payment.refunds'::regclass"
            assert run_sql(ours, same) == [(True,)]
            assert run_sql(url, "SELECT count(*) FROM public.refunds")[0][0] == 1
        finally:
            dispose(app)


def test_a_deployment_in_public_of_another_owner_is_refused_then_moved_and_handed_over(
    midtrans_simulator, payment_role
):
    with fresh_database("handover") as url:
        old = service(url, midtrans_simulator, DATABASE_SCHEMA="public")
        migrate(old)
        paid_id = pay_and_refund(old, midtrans_simulator)
        paid = read_payment(old, paid_id)
        dispose(old)
        create_role(url, payment_role)
        ours = service(as_role(url, payment_role), midtrans_simulator)
        try:
            # The role cannot move postgres's tables: it says so instead of starting empty ones.
            refused = flask_command(as_role(url, payment_role), midtrans_simulator, "db", "upgrade")
            assert refused.returncode != 0
            assert "tables are in schema public, owned by postgres" in refused.stderr
            assert objects_in(url, "payment")["tables"] == set()

            migrate(service(url, midtrans_simulator))  # the old owner moves them
            create_role(url, payment_role)  # and the script hands them over
            migrate(ours)
            owners = run_sql(
                url, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = %s", ("payment",)
            )
            assert owners == [(payment_role,)]
            assert read_payment(ours, paid_id) == paid
            assert pay_and_refund(ours, midtrans_simulator)
        finally:
            dispose(ours)
