"""Creating and dropping scratch PostgreSQL databases, through the server's postgres database."""

from __future__ import annotations

import sqlalchemy as sa


def admin_execute(url: str, *statements: str) -> None:
    """Run statements in the postgres database of `url`'s server, each outside a transaction."""
    admin = sa.create_engine(
        sa.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))
    admin.dispose()


def recreate_database(url: str) -> None:
    """Drop the database of `url` if it exists (disconnecting its clients) and create it empty."""
    name = sa.make_url(url).database
    admin_execute(
        url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
    )


def drop_database(url: str) -> None:
    """Drop the database of `url` if it exists, disconnecting its clients."""
    admin_execute(url, f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')
