"""Settings from the environment, validated once at start."""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from limits import parse_many

SIMULATOR_SERVER_KEY = "SB-Mid-server-SIMULATOR"
SIMULATOR_CLIENT_KEY = "SB-Mid-client-SIMULATOR"
SIMULATOR_PREFIX = "/_simulator"
DEFAULT_JWT_SECRET = "secret"
# Secrets that sign money messages and sessions: at least this long, and none of the values
# that examples and defaults hand out.
MIN_SECRET_BYTES = 32
KNOWN_DEFAULT_SECRETS = frozenset(
    {"secret", "changeme", "change-me", "password", "dev", "development", "test", "default"}
)
SNAP_JS_PRODUCTION = "https://app.midtrans.com/snap/snap.js"
SNAP_JS_SANDBOX = "https://app.sandbox.midtrans.com/snap/snap.js"
SECRET_KEY_FILE = "secret_key"
# TiketQ's services share one PostgreSQL database: ours keep to a schema of their own.
DEFAULT_DATABASE_SCHEMA = "payment"
# Lower case only: PostgreSQL folds unquoted names, so the schema reads the same everywhere.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# The purge's retention settings and their defaults, in days.
RETENTION_DAYS = {
    "REJECTED_RETENTION_DAYS": 7.0,
    "NOTIFICATION_BODY_RETENTION_DAYS": 90.0,
    "OUTBOX_RETENTION_DAYS": 90.0,
    "HEARTBEAT_RETENTION_DAYS": 7.0,
}
# A retention beyond this is a typo, and one beyond the calendar would stop every purge.
_MAX_RETENTION_DAYS = 36_500

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(RuntimeError):
    """The configuration cannot run the service; the message says what to set."""


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """Read NAME, or the file named by NAME_FILE (Docker secrets), stripped."""
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path} cannot be read: {exc.strerror}") from exc
    value = env.get(name)
    return value.strip() if value else None


def _flag(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name)
    value = (raw or "").strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _list(raw: str | None) -> list[str]:
    return [item.strip() for item in (raw or "").split(",") if item.strip()]


def database_url(env: Mapping[str, str], instance_path: str) -> str:
    """DATABASE_URL, else one built from POSTGRES_*, else SQLite in the instance folder."""
    url = _secret(env, "DATABASE_URL")
    if url:
        # Heroku-style URLs say "postgres", which SQLAlchemy 2 refuses, and a bare "postgresql"
        # means psycopg 3 to SQLAlchemy 2.1: the installed driver is psycopg2.
        for bare in ("postgres://", "postgresql://"):
            if url.startswith(bare):
                return "postgresql+psycopg2://" + url[len(bare) :]
        return url
    host = env.get("POSTGRES_HOST")
    if host:
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg2",
            username=_secret(env, "POSTGRES_USER") or "postgres",
            password=_secret(env, "POSTGRES_PASSWORD"),
            host=host,
            port=_int(env, "POSTGRES_PORT", 5432),
            database=_secret(env, "POSTGRES_DB") or "postgres",
        ).render_as_string(hide_password=False)
    return "sqlite:///" + os.path.join(instance_path, "tiketq.sqlite3")


def database_settings(env: Mapping[str, str]) -> str:
    """The settings database_url takes the database from, to name them in messages."""
    if env.get("POSTGRES_HOST") and not (env.get("DATABASE_URL") or env.get("DATABASE_URL_FILE")):
        return "POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB"
    # Also when neither is set: DATABASE_URL is then what to set instead of the SQLite default.
    return "DATABASE_URL"


def public_base_url(env: Mapping[str, str], port: int, is_production: bool) -> str | None:
    """PUBLIC_BASE_URL without a trailing slash; outside production, this machine's own port."""
    configured = (env.get("PUBLIC_BASE_URL") or "").strip().rstrip("/")
    if configured:
        return configured
    return None if is_production else f"http://127.0.0.1:{port}"


FINISH_URL_FIELDS = ("order_id", "payment_id")


def finish_url_hosts(env: Mapping[str, str]) -> frozenset[str]:
    """The hosts a finish URL may lead to: FINISH_URL_HOSTS and FINISH_URL's own, lower case."""
    hosts = {host.lower() for host in _list(env.get("FINISH_URL_HOSTS"))}
    template = (env.get("FINISH_URL") or "").strip()
    if template:
        hosts.add((urlsplit(template).hostname or "").lower())
    return frozenset(hosts - {""})


def from_environ(env: Mapping[str, str], instance_path: str) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables."""
    server_key = _secret(env, "MIDTRANS_SERVER_KEY")
    client_key = _secret(env, "MIDTRANS_CLIENT_KEY")
    is_production = bool(_flag(env, "MIDTRANS_IS_PRODUCTION"))
    simulator = _flag(env, "MIDTRANS_SIMULATOR")
    if simulator is None:
        simulator = not server_key
    port = _int(env, "PORT", 8003)
    base_url = env.get("MIDTRANS_BASE_URL") or None
    # A simulator run by another process of ours (the web container's, for a worker container).
    if simulator and not base_url:
        base_url = env.get("MIDTRANS_SIMULATOR_URL") or None
    in_app = simulator and not base_url
    if in_app:
        # The in-app simulator is reached over HTTP like the real Midtrans, on this process's port.
        base_url = f"http://127.0.0.1:{port}{SIMULATOR_PREFIX}"
    return {
        "SERVICE_NAME": env.get("SERVICE_NAME", "payment-service"),
        "PORT": port,
        # Production refuses to start without it; elsewhere create_app keeps one in instance/.
        "SECRET_KEY": _secret(env, "SECRET_KEY"),
        "SESSION_COOKIE_NAME": "__Host-tiketq" if is_production else "tiketq",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": is_production,
        "PROXY_FIX_HOPS": _int(env, "PROXY_FIX_HOPS", 0),
        # Every address we hand out starts with this, never with the request's Host header.
        "PUBLIC_BASE_URL": public_base_url(env, port, is_production),
        # Where the traveller goes back to TiketQ, e.g. https://tiketq.example/orders/{order_id};
        # a create may name its own finish_url, on these hosts only (FINISH_URL's host included).
        "FINISH_URL": (env.get("FINISH_URL") or "").strip() or None,
        "FINISH_URL_HOSTS": finish_url_hosts(env),
        "MIDTRANS_SNAP_JS_URL": env.get("MIDTRANS_SNAP_JS_URL") or None,
        "SQLALCHEMY_DATABASE_URI": database_url(env, instance_path),
        # On PostgreSQL every table, index, function and Alembic's version table live here.
        "DATABASE_SCHEMA": (env.get("DATABASE_SCHEMA") or "").strip() or DEFAULT_DATABASE_SCHEMA,
        "MIDTRANS_SERVER_KEY": server_key or (SIMULATOR_SERVER_KEY if simulator else None),
        "MIDTRANS_CLIENT_KEY": client_key or (SIMULATOR_CLIENT_KEY if simulator else None),
        "MIDTRANS_IS_PRODUCTION": is_production,
        "MIDTRANS_SIMULATOR": simulator,
        "MIDTRANS_SIMULATOR_IN_APP": in_app,
        "MIDTRANS_SIMULATOR_STATE": env.get("MIDTRANS_SIMULATOR_STATE")
        or os.path.join(instance_path, "simulator.sqlite3"),
        "MIDTRANS_BASE_URL": base_url,
        # Where the in-app simulator sends its notifications: this service's own webhook.
        "MIDTRANS_SIMULATOR_NOTIFICATION_URL": env.get("MIDTRANS_SIMULATOR_NOTIFICATION_URL")
        or f"http://127.0.0.1:{port}/payments/webhook",
        "MIDTRANS_CONNECT_TIMEOUT": _float(env, "MIDTRANS_CONNECT_TIMEOUT", 3.05),
        "MIDTRANS_READ_TIMEOUT": _float(env, "MIDTRANS_READ_TIMEOUT", 10.0),
        # After this many Midtrans timeouts or outages in a row, calls fail at once for a while
        # (0: never), so that waiting on Midtrans cannot hold every gunicorn thread.
        "MIDTRANS_BREAKER_FAILURES": _int(env, "MIDTRANS_BREAKER_FAILURES", 5),
        "MIDTRANS_BREAKER_SECONDS": _float(env, "MIDTRANS_BREAKER_SECONDS", 30.0),
        "STATUS_REFRESH_SECONDS": _float(env, "STATUS_REFRESH_SECONDS", 5.0),
        "ADMIN_API_KEYS": _list(_secret(env, "ADMIN_API_KEYS")),
        "API_KEYS": _list(_secret(env, "API_KEYS")),
        "API_AUTH_REQUIRED": bool(_flag(env, "API_AUTH_REQUIRED")),
        # The transaction service creates payments without credentials (its contract).
        "API_ALLOW_ANONYMOUS_CREATE": _flag(env, "API_ALLOW_ANONYMOUS_CREATE") is not False,
        # The transaction service's own defaults: its compose name and port, and its JWT secret.
        "TRANSACTION_SERVICE_URL": env.get(
            "TRANSACTION_SERVICE_URL", "http://transaction-service:8000"
        ),
        "JWT_SECRET": _secret(env, "JWT_SECRET") or DEFAULT_JWT_SECRET,
        "EVENT_SUBSCRIBER_URLS": _list(env.get("EVENT_SUBSCRIBER_URLS")),
        "EVENT_SIGNING_SECRET": _secret(env, "EVENT_SIGNING_SECRET"),
        "OUTBOUND_CONNECT_TIMEOUT": _float(env, "OUTBOUND_CONNECT_TIMEOUT", 3.05),
        "OUTBOUND_READ_TIMEOUT": _float(env, "OUTBOUND_READ_TIMEOUT", 10.0),
        "WORKER_INTERVAL": _float(env, "WORKER_INTERVAL", 5.0),
        "WORKER_BATCH": _int(env, "WORKER_BATCH", 50),
        # The inbox is looked at this often even when no wake-up comes (SQLite has none).
        "WORKER_INBOX_POLL": _float(env, "WORKER_INBOX_POLL", 1.0),
        # Orders applied at once: each mostly waits for Midtrans's status answer.
        "WORKER_INBOX_THREADS": _int(env, "WORKER_INBOX_THREADS", 4),
        # Days the daily purge keeps refused notifications, applied notifications' raw bodies
        # (their parsed fields stay), delivered deliveries and sent payloads, silent workers.
        **{name: _float(env, name, days) for name, days in RETENTION_DAYS.items()},
        "MAX_CONTENT_LENGTH": _int(env, "MAX_CONTENT_LENGTH", 64 * 1024),
        # Production publishes the API's shape only when asked to.
        "DOCS_ENABLED": _flag(env, "DOCS_ENABLED")
        or (_flag(env, "DOCS_ENABLED") is None and not is_production),
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO").upper(),
        "METRICS_ENABLED": _flag(env, "METRICS_ENABLED") is not False,
        "METRICS_TOKEN": _secret(env, "METRICS_TOKEN"),
        # Staff of the /ops pages as name:hash entries, made by `flask payments ops-user NAME`.
        "OPS_USERS": _list(_secret(env, "OPS_USERS")),
        # Refused logins per account (the name typed), then per client address over all names.
        "OPS_LOGIN_RATE": env.get("OPS_LOGIN_RATE") or "5 per minute",
        "OPS_LOGIN_ADDRESS_RATE": env.get("OPS_LOGIN_ADDRESS_RATE") or "20 per minute",
        "OPS_SESSION_HOURS": _float(env, "OPS_SESSION_HOURS", 8.0),
        # A staff session nobody used for this long is over (checked on the server).
        "OPS_IDLE_MINUTES": _float(env, "OPS_IDLE_MINUTES", 30.0),
        "OPS_STUCK_MINUTES": _int(env, "OPS_STUCK_MINUTES", 30),
        # memory:// counts per process: several gunicorn workers need a shared redis:// store.
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI") or "memory://",
        # Keeps the counts of deployments that share one Redis apart.
        "RATELIMIT_KEY_PREFIX": env.get("RATELIMIT_KEY_PREFIX", ""),
        "SENTRY_DSN": _secret(env, "SENTRY_DSN"),
    }


def validate(config: Mapping[str, Any]) -> None:
    """Refuse configurations that would take money wrongly; say what to set."""
    server_key = config.get("MIDTRANS_SERVER_KEY")
    client_key = config.get("MIDTRANS_CLIENT_KEY")
    if config.get("MIDTRANS_IS_PRODUCTION"):
        if config.get("MIDTRANS_SIMULATOR"):
            raise ConfigError(
                "MIDTRANS_IS_PRODUCTION=true cannot run on the Midtrans simulator: "
                "set MIDTRANS_SERVER_KEY and MIDTRANS_CLIENT_KEY to production keys "
                "and MIDTRANS_SIMULATOR=false"
            )
        if not server_key or not client_key:
            raise ConfigError(
                "MIDTRANS_IS_PRODUCTION=true needs MIDTRANS_SERVER_KEY and MIDTRANS_CLIENT_KEY "
                "(or MIDTRANS_SERVER_KEY_FILE / MIDTRANS_CLIENT_KEY_FILE)"
            )
        if server_key.startswith("SB-") or client_key.startswith("SB-"):
            raise ConfigError(
                "MIDTRANS_IS_PRODUCTION=true with a sandbox key (SB- prefix): set the production "
                "MIDTRANS_SERVER_KEY and MIDTRANS_CLIENT_KEY, or MIDTRANS_IS_PRODUCTION=false"
            )
        if config.get("MIDTRANS_BASE_URL"):
            raise ConfigError("MIDTRANS_BASE_URL must not be set with MIDTRANS_IS_PRODUCTION=true")
        if config.get("MIDTRANS_SNAP_JS_URL"):
            raise ConfigError(
                "MIDTRANS_SNAP_JS_URL must not be set with MIDTRANS_IS_PRODUCTION=true: "
                "the checkout page loads Snap.js from " + SNAP_JS_PRODUCTION
            )
        weak = _weak_production_settings(config)
        if weak:
            raise ConfigError(
                "MIDTRANS_IS_PRODUCTION=true refuses weak settings:\n- " + "\n- ".join(weak)
            )
    # The production image leaves the simulator out; mounting it there would end in an
    # ImportError's traceback instead of what to set.
    in_app = config.get("MIDTRANS_SIMULATOR_IN_APP")
    if in_app and importlib.util.find_spec("midtrans_simulator") is None:
        raise ConfigError(
            "The in-app Midtrans simulator is not installed (the production image leaves "
            "midtrans_simulator out): set MIDTRANS_SERVER_KEY and MIDTRANS_CLIENT_KEY, with "
            "MIDTRANS_SIMULATOR unset or false; or use the dev image (docker build --target dev) "
            "or `make run`"
        )
    _validate_public_base_url(config.get("PUBLIC_BASE_URL"))
    _validate_finish_url(
        config.get("FINISH_URL"), production=bool(config.get("MIDTRANS_IS_PRODUCTION"))
    )
    for host in config.get("FINISH_URL_HOSTS", ()):
        if not re.fullmatch(r"[a-z0-9.-]+", host):
            raise ConfigError(
                f"FINISH_URL_HOSTS entry {host!r} is not a host name: list hosts only, "
                "e.g. tiketq.example,m.tiketq.example (no scheme, port or path)"
            )
    _validate_database_schema(config.get("DATABASE_SCHEMA", DEFAULT_DATABASE_SCHEMA))
    if config.get("PROXY_FIX_HOPS", 0) < 0:
        raise ConfigError("PROXY_FIX_HOPS must be 0 (no proxy) or the number of proxies in front")
    _validate_ops(config)
    _validate_retention(config)
    if config.get("EVENT_SUBSCRIBER_URLS") and not config.get("EVENT_SIGNING_SECRET"):
        raise ConfigError("EVENT_SUBSCRIBER_URLS needs EVENT_SIGNING_SECRET to sign the events")
    if not config.get("MIDTRANS_IS_PRODUCTION") and (not server_key or not client_key):
        raise ConfigError(
            "MIDTRANS_SIMULATOR=false needs MIDTRANS_SERVER_KEY (a sandbox key, SB-Mid-server-...) "
            "and MIDTRANS_CLIENT_KEY; or unset MIDTRANS_SIMULATOR to use the local simulator"
        )


# What signs what, for the message that asks for a stronger one.
_SIGNING_SECRETS = {
    "JWT_SECRET": "the transaction service verifies payment confirmations with it",
    "SECRET_KEY": "it signs the pages' sessions and CSRF tokens, the same in every worker",
    "EVENT_SIGNING_SECRET": "subscribers verify the events with it",
}


def _weak_production_settings(config: Mapping[str, Any]) -> list[str]:
    """Each setting that production must not run with, said as what to set."""
    weak = []
    if not config.get("API_AUTH_REQUIRED"):
        weak.append(
            "API_AUTH_REQUIRED=true: without it anyone can read payments by order id "
            "(give callers keys in API_KEYS, made by `flask payments api-key NAME`)"
        )
    if config.get("METRICS_ENABLED") and not config.get("METRICS_TOKEN"):
        weak.append("METRICS_TOKEN (or METRICS_ENABLED=false): /metrics tells what we earn")
    for name, why in _SIGNING_SECRETS.items():
        value = config.get(name)
        if name == "EVENT_SIGNING_SECRET" and not value:
            continue  # only needed with EVENT_SUBSCRIBER_URLS, which checks it is set
        if not value or value.lower() in KNOWN_DEFAULT_SECRETS:
            weak.append(f"{name} (or {name}_FILE): {why}")
        elif len(value.encode()) < MIN_SECRET_BYTES:
            weak.append(f"{name} of at least {MIN_SECRET_BYTES} bytes: {why}")
    if str(config.get("RATELIMIT_STORAGE_URI", "")).startswith("memory://"):
        weak.append(
            "RATELIMIT_STORAGE_URI=redis://...: memory:// counts refused logins per process, "
            "so every gunicorn worker and instance would give another set of tries"
        )
    if not config.get("PUBLIC_BASE_URL"):
        weak.append("PUBLIC_BASE_URL (e.g. https://pay.tiketq.example): the travellers' address")
    elif not str(config["PUBLIC_BASE_URL"]).startswith("https://"):
        weak.append("PUBLIC_BASE_URL starting with https://: travellers pay on these pages")
    return weak


def _validate_public_base_url(url: str | None) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"PUBLIC_BASE_URL={url!r} is not a base address like https://pay.tiketq.example "
            "(scheme and host, optionally a path; no query)"
        )


def _validate_database_schema(schema: str) -> None:
    from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS

    # The name goes unquoted into connection options and DDL: a plain identifier only, and not
    # one of PostgreSQL's own schemas.
    if (
        not _SCHEMA_NAME.fullmatch(schema)
        or schema in RESERVED_WORDS
        or schema.startswith("pg_")
        or schema == "information_schema"
    ):
        raise ConfigError(
            f"DATABASE_SCHEMA={schema!r} is not a schema name we can use: lower-case letters, "
            "digits and _ (at most 63, not starting with a digit or pg_, not an SQL keyword), "
            "e.g. payment"
        )


def _validate_finish_url(template: str | None, *, production: bool) -> None:
    if template is None:
        return
    parts = urlsplit(template)
    schemes = ("https",) if production else ("http", "https")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:  # an unmatched brace
        fields = {"{"}
    if parts.scheme not in schemes or not parts.hostname or not fields <= set(FINISH_URL_FIELDS):
        raise ConfigError(
            f"FINISH_URL={template!r} is not an address like "
            "https://tiketq.example/orders/{order_id} "
            f"({' or '.join(schemes)}; placeholders {{order_id}} and {{payment_id}} only)"
        )


def _validate_ops(config: Mapping[str, Any]) -> None:
    for entry in config.get("OPS_USERS", []):
        # Werkzeug hashes look like scrypt:32768:8:1$salt$hex: the name ends at the first colon.
        name, _, hashed = entry.partition(":")
        method = hashed.split(":", 1)[0]
        if not name or method not in ("scrypt", "pbkdf2") or hashed.count("$") != 2:
            # Only the name is repeated: a mistyped entry may hold a password.
            raise ConfigError(
                f"OPS_USERS entry {name or '(no name)'!r} is not name:hash; "
                "make one with `flask payments ops-user NAME`"
            )
    for name in ("OPS_LOGIN_RATE", "OPS_LOGIN_ADDRESS_RATE"):
        try:
            parse_many(config.get(name, "5 per minute"))
        except ValueError:
            raise ConfigError(
                f"{name}={config.get(name)!r} is not a rate like '5 per minute'"
            ) from None
    for name, default in (
        ("OPS_STUCK_MINUTES", 30),
        ("OPS_SESSION_HOURS", 8),
        ("OPS_IDLE_MINUTES", 30),
    ):
        if config.get(name, default) <= 0:
            raise ConfigError(f"{name} must be greater than 0")


def _validate_retention(config: Mapping[str, Any]) -> None:
    for name, default in RETENTION_DAYS.items():
        days = config.get(name, default)
        # Also refuses NaN, which compares false with everything.
        if not 0 < days <= _MAX_RETENTION_DAYS:
            raise ConfigError(
                f"{name}={days:g}: set the days the purge keeps those rows, "
                f"greater than 0 (at most {_MAX_RETENTION_DAYS}); default {default:g}"
            )


def snap_js_url(config: Mapping[str, Any]) -> str:
    """Where the checkout page loads Snap.js from: Midtrans, or the simulator's stand-in."""
    if config.get("MIDTRANS_SNAP_JS_URL"):
        return str(config["MIDTRANS_SNAP_JS_URL"])
    if config.get("MIDTRANS_IS_PRODUCTION"):
        return SNAP_JS_PRODUCTION
    if not config.get("MIDTRANS_SIMULATOR"):
        return SNAP_JS_SANDBOX
    if config.get("MIDTRANS_SIMULATOR_IN_APP"):
        return SIMULATOR_PREFIX + "/snap/snap.js"
    return str(config["MIDTRANS_BASE_URL"]).rstrip("/") + "/snap/snap.js"


def instance_secret_key(instance_path: str) -> str:
    """The secret kept in the instance folder, made on first use, so that all workers share it."""
    path = Path(instance_path) / SECRET_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"{SECRET_KEY_FILE}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(secrets.token_hex(32))
        try:
            # A link never replaces an existing file: of two workers starting at once, one wins.
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text(encoding="utf-8").strip()
