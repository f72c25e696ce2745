import logging
from logging.config import fileConfig

from flask import current_app
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from alembic import context
from alembic.script import ScriptDirectory

from tiketq.config import ConfigError
from tiketq.extensions import cannot_connect

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger('alembic.env')


def get_engine():
    return current_app.extensions['migrate'].db.engine


def get_engine_url():
    try:
        return get_engine().url.render_as_string(hide_password=False).replace(
            '%', '%%')
    except AttributeError:
        return str(get_engine().url).replace('%', '%%')


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option('sqlalchemy.url', get_engine_url())
target_db = current_app.extensions['migrate'].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    if hasattr(target_db, 'metadatas'):
        return target_db.metadatas[None]
    return target_db.metadata


# Our tables, as a deployment from before DATABASE_SCHEMA (revisions 0001-0007) created them in
# public, or one run with DATABASE_SCHEMA=public since: whichever of them exist move together.
PUBLIC_LAYOUT_TABLES = (
    'alembic_version', 'payments', 'payment_events', 'notifications', 'outbox', 'refunds',
    'deliveries', 'worker_heartbeats', 'staff_sessions', 'maintenance_runs',
)
PUBLIC_LAYOUT_FUNCTIONS = ('notify_inbox()',)
# Columns only our payments table has: the replaced service's payments has neither.
OUR_PAYMENT_COLUMNS = ('gateway_order_id', 'request_fingerprint')


def our_schema(backend: str) -> str | None:
    """Our schema on PostgreSQL; None on SQLite, which has only one."""
    return current_app.config['DATABASE_SCHEMA'] if backend == 'postgresql' else None


def prepare_schema(connection: Connection, schema: str) -> None:
    """Create the schema if missing, and move a deployment of ours out of public into it.

    Here and not in a migration: Alembic reads the current revision from its version table
    before any migration runs, and that table is one of those that move.
    """
    if schema == 'public':
        return
    # CREATE SCHEMA IF NOT EXISTS checks the right to create schemas first, which a role that
    # was given its schema (docs/database-roles.sql) rightly lacks.
    if connection.execute(text('SELECT to_regnamespace(:s)'), {'s': schema}).scalar() is None:
        connection.execute(text(f'CREATE SCHEMA {schema}'))
    if _is_our_public_deployment(connection, schema):
        _move_out_of_public(connection, schema)


def _public_tables(connection: Connection) -> dict[str, tuple[str, bool]]:
    """Our layout's table names found in public: their owner, and whether we may act as it."""
    rows = connection.execute(
        text(
            "SELECT c.relname, pg_get_userbyid(c.relowner), pg_has_role(c.relowner, 'USAGE')"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY(:names)"
        ),
        {'names': list(PUBLIC_LAYOUT_TABLES)},
    )
    return {name: (owner, ours) for name, owner, ours in rows}


def _is_our_public_deployment(connection: Connection, schema: str) -> bool:
    """Whether public holds this service's tables: our revision in alembic_version, our payments.

    The catalogs answer without any right on the tables, so a deployment that the connected
    role may not move is refused instead of being left behind under a new, empty one.
    """
    tables = _public_tables(connection)
    if 'alembic_version' not in tables or 'payments' not in tables:
        return False
    columns = connection.execute(
        text(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.payments'::regclass"
            " AND attname = ANY(:names) AND NOT attisdropped"
        ),
        {'names': list(OUR_PAYMENT_COLUMNS)},
    ).scalar()
    if columns != len(OUR_PAYMENT_COLUMNS):
        return False  # the replaced service's payments, or another service's
    foreign = sorted({owner for owner, ours in tables.values() if not ours})
    if foreign:
        raise ConfigError(
            f"this service's tables are in schema public, owned by {', '.join(foreign)}: run "
            f"`flask db upgrade` once as that role (or a superuser) to move them into {schema}"
        )
    revisions = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    found = set(connection.execute(text('SELECT version_num FROM public.alembic_version')).scalars())
    if not found & revisions:
        return False
    if connection.execute(text('SELECT to_regclass(:t)'), {'t': f'{schema}.alembic_version'}).scalar():
        raise ConfigError(
            f"this service's tables are both in schema public and in {schema}: "
            "keep one (see README, Running in TiketQ's shared database)"
        )
    return True


def _move_out_of_public(connection: Connection, schema: str) -> None:
    """Move our tables (with their indexes, constraints, sequences, triggers) and functions."""
    for table in _public_tables(connection):
        connection.execute(text(f'ALTER TABLE public.{table} SET SCHEMA {schema}'))
    for function in PUBLIC_LAYOUT_FUNCTIONS:
        if connection.execute(text('SELECT to_regprocedure(:f)'), {'f': f'public.{function}'}).scalar():
            connection.execute(text(f'ALTER FUNCTION public.{function} SET SCHEMA {schema}'))
    logger.info('Moved this service\'s tables from schema public into %s.', schema)


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    schema = our_schema(get_engine().url.get_backend_name())
    context.configure(
        url=url, target_metadata=get_metadata(), literal_binds=True,
        version_table_schema=schema,
    )

    with context.begin_transaction():
        if schema:
            # The script runs without our connection options; a deployment in public is only
            # moved online.
            context.execute(f'CREATE SCHEMA IF NOT EXISTS {schema}')
            context.execute(f'SET search_path TO {schema}')
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, 'autogenerate', False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info('No changes in schema detected.')

    conf_args = current_app.extensions['migrate'].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    connectable = get_engine()

    try:
        connection = connectable.connect()
    except OperationalError as error:
        # One line saying where and what to check, instead of alembic's long traceback.
        raise cannot_connect(connectable.url, error) from error

    with connection:
        schema = our_schema(connection.dialect.name)
        if schema:
            with connection.begin():
                prepare_schema(connection, schema)
        context.configure(
            connection=connection,
            target_metadata=get_metadata(),
            version_table_schema=schema,
            **conf_args
        )

        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
