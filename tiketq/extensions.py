"""Unbound extensions, bound to an app in create_app."""

import functools
import select
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase

# Named constraints keep Alembic migrations reviewable and reversible.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()


def release_session(exc: BaseException | None) -> None:
    """End the request's session, even when the database went away under it.

    Registered after Flask-SQLAlchemy's own teardown, so it runs first (teardowns run in
    reverse). A restart between the answer and the end of the request makes the rollback fail;
    the dead connection is discarded by then, so closing again releases the session and the
    answer stands instead of becoming gunicorn's bare 500.
    """
    try:
        db.session.remove()
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        db.session.remove()


def ping_when_hung_up(app: Flask) -> None:
    """Test a pooled connection before use when, and only when, its server may have closed it.

    A restart closes every connection in the pool, and the first request to use one would fail.
    SQLAlchemy's pool_pre_ping finds them with a round trip on every checkout, twice per
    notification. An idle connection's socket has nothing to read unless the server hung up or
    spoke unasked (the FATAL it sends when it shuts down), and the kernel can tell that for
    free: only then is the connection pinged, and a dead one replaced before the request sees it.
    SQLite has no socket and no server to lose, so only PostgreSQL engines get the check.
    """
    with app.app_context():
        engines = [e for e in db.engines.values() if e.dialect.name == "postgresql"]
    for engine in engines:
        sa.event.listen(engine, "checkout", functools.partial(_ping_if_readable, engine.dialect))


def _ping_if_readable(dialect: sa.Dialect, dbapi_connection: Any, record: Any, proxy: Any) -> None:
    try:
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN)
        if not poller.poll(0):
            return
        dialect.do_ping(dbapi_connection)
    except dialect.loaded_dbapi.Error as error:
        # The pool discards the connection and checks out another, up to three times.
        raise DisconnectionError(f"pooled connection is closed: {error}") from error
