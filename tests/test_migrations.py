"""Migrations: at head they match the models, and they go down and up again cleanly."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from tests.support.config import TEST_DATABASE_URL, app_config
from tiketq import create_app
from tiketq.extensions import db


def test_migrations_at_head_match_the_models(app):
    with app.app_context():
        context = MigrationContext.configure(db.session.connection(), opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


def test_no_native_enum_named_paymentstatus_is_created(app):
    with app.app_context():
        types = (
            db.session.execute(sa.text("SELECT typname FROM pg_type WHERE typtype = 'e'"))
            .scalars()
            .all()
        )
    assert "paymentstatus" not in types


def test_migrations_downgrade_to_nothing_and_upgrade_again(midtrans_simulator):
    url = sa.make_url(TEST_DATABASE_URL).set(
        database=sa.make_url(TEST_DATABASE_URL).database + "_roundtrip"
    )
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
    app = create_app(
        app_config(
            SQLALCHEMY_DATABASE_URI=url.render_as_string(hide_password=False),
            MIDTRANS_BASE_URL=midtrans_simulator.url,
        )
    )
    try:
        with app.app_context():
            upgrade()
            downgrade(revision="base")
            assert sa.inspect(db.engine).get_table_names() == ["alembic_version"]
            upgrade()
            assert {"payments", "payment_events"} <= set(sa.inspect(db.engine).get_table_names())
            db.engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        admin.dispose()
