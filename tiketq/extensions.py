"""Unbound extensions, bound to an app in create_app."""

import functools
import os
import select
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase

from tiketq.config import DEFAULT_DATABASE_SCHEMA, ConfigError, database_settings

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

    if TYPE_CHECKING:
        # SQLAlchemy types it as any FromClause; every model here maps a plain Table.
        __table__: ClassVar[sa.Table]


# What a working database URL looks like, in the messages that refuse one.
URL_EXAMPLE = "postgresql://user:password@host:5432/dbname"


def _missing_driver(url: str, error: ImportError) -> str:
    """The refusal of a URL whose driver is not installed."""
    drivername = sa.make_url(url).drivername
    return (
        f"{database_settings(os.environ)} needs the Python module {error.name!r} for "
        f"{drivername}://, which is not installed: use {URL_EXAMPLE} (psycopg2 is installed)"
    )


def _unusable_url(error: Exception) -> str:
    """The refusal of a URL SQLAlchemy cannot read."""
    # SQLAlchemy's messages here never repeat the URL, so no password can be in them.
    return (
        f"{database_settings(os.environ)} is not a database URL SQLAlchemy can use ({error}): "
        f"use {URL_EXAMPLE}"
    )


class Database(SQLAlchemy):
    """Flask-SQLAlchemy whose init_app, which makes the engines, fails with a ConfigError."""

    def init_app(self, app: Flask) -> None:
        """Bind to the app; a database URL no engine can be made from says what to set."""
        try:
            super().init_app(app)
        # The dialect imports its driver when the engine is made: MySQLdb, psycopg 3, ...
        except ImportError as error:
            uri = app.config["SQLALCHEMY_DATABASE_URI"]
            raise ConfigError(_missing_driver(uri, error)) from error
        # Unparseable, an unknown dialect, or (ValueError) a port that is not a number.
        except (ArgumentError, ValueError) as error:
            raise ConfigError(_unusable_url(error)) from error

    def _apply_driver_defaults(self, options: dict[str, Any], app: Flask) -> None:
        """Flask-SQLAlchemy's defaults, and on PostgreSQL the search_path of our schema."""
        super()._apply_driver_defaults(options, app)
        # Flask-SQLAlchemy's hook (private, hence the pinned version) sees each engine's final
        # URL, however it was configured; SQLite's driver would refuse an `options` argument.
        if sa.make_url(options["url"]).get_backend_name() == "postgresql":
            schema = app.config.get("DATABASE_SCHEMA", DEFAULT_DATABASE_SCHEMA)
            connect_args = options.setdefault("connect_args", {})
            connect_args["options"] = schema_options(schema, connect_args.get("options"))


def schema_options(schema: str, options: str | None = None) -> str:
    """libpq startup options that make `schema` the only one unqualified names resolve in.

    Set when the connection opens, before any statement (and in every pooled connection, the
    worker's LISTEN one included): every table, index and function the migrations create and
    every query the code runs lands in the schema, and the other services' tables in public
    are not even visible. pg_catalog is always searched first, so built-ins still resolve.
    """
    return " ".join(filter(None, [options, f"-c search_path={schema}"]))


def cannot_connect(url: sa.URL, error: OperationalError) -> ConfigError:
    """The refusal of a database that takes no connection: where, why, and what to check."""
    # flask-migrate prints a RuntimeError such as ConfigError as one line, without a traceback.
    # The driver's first line says why ("... port 1 failed: Connection refused"); the rest is
    # a hint and SQLAlchemy's link.
    reason = str(error.orig).strip().splitlines()[0]
    return ConfigError(
        f"cannot connect to the database at {url.render_as_string(hide_password=True)} "
        f"({reason}): check {database_settings(os.environ)}, and that the server is running "
        "and accepts connections there"
    )


db = Database(model_class=Base)
migrate = Migrate()

# The base of the models. mypy takes no class made at run time as a base (python/mypy#8603);
# db.Model is Base's body on Flask-SQLAlchemy's mixins, whose only addition, the legacy
# Model.query, is not used.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model


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
