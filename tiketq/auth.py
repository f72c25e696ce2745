"""API keys for callers and staff: configured as hashes, compared in constant time, rotatable."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import click
from flask import Flask, Response, current_app, request

from tiketq import logs
from tiketq.errors import json_error
from tiketq.metrics import AUTH_FAILURES

log = logging.getLogger(__name__)
EXTENSION_KEY = "tiketq.api_keys"
HASH_PREFIX = "sha256:"
# What may name a key in `name=value`; base64 keys fit it too, so `=` after it decides (see parse).
_NAME = re.compile(r"[A-Za-z0-9._:-]+")
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class ApiKey:
    """One configured key: who holds it, its hash, and whether it may cancel and refund."""

    name: str
    digest: bytes
    admin: bool


def digest(key: str) -> bytes:
    """The SHA-256 of a key, as stored."""
    return hashlib.sha256(key.encode()).digest()


def split_entry(entry: str) -> tuple[str | None, str]:
    """An entry's name (None for a bare key) and its value, by the rule `parse` documents."""
    name, separator, value = entry.partition("=")
    if separator and _NAME.fullmatch(name) and value.strip("="):
        return name, value
    return None, entry


def parse(entries: list[str], *, admin: bool) -> list[ApiKey]:
    """Read `name=sha256:<hex>`, `name=<plaintext>` and bare `<plaintext>` entries.

    An entry is named when the part before its first `=` is a name (`[A-Za-z0-9._:-]+`) and
    something other than `=` follows it; any other entry is a bare key, whole. So base64 padding
    stays part of a key: `abc==` is the bare key `abc==`, `ops=abc==` is the key `abc==` named
    `ops`. A bare key may hold `=` only as trailing padding (else write it as `name=key`).
    Plaintext keys are hashed here; only hashes are kept.
    """
    keys = []
    for number, entry in enumerate(entries, start=1):
        name, value = split_entry(entry)
        name = name or f"{'admin' if admin else 'caller'}-{number}"
        if value.startswith(HASH_PREFIX):
            keys.append(ApiKey(name, bytes.fromhex(value[len(HASH_PREFIX) :]), admin))
        else:
            keys.append(ApiKey(name, digest(value), admin))
    return keys


def plaintext_keys(entries: list[str]) -> list[str]:
    """The keys configured in plaintext (not as `sha256:` hashes) among `entries`."""
    values = (value for _, value in map(split_entry, entries))
    return [value for value in values if not value.startswith(HASH_PREFIX)]


def init_app(app: Flask) -> None:
    """Load the configured keys (only their hashes are kept) and keep them out of the logs."""
    keys = parse(app.config["API_KEYS"], admin=False) + parse(
        app.config["ADMIN_API_KEYS"], admin=True
    )
    app.extensions[EXTENSION_KEY] = keys
    logs.SECRETS.remember(plaintext_keys(app.config["API_KEYS"] + app.config["ADMIN_API_KEYS"]))
    # A key known only by its hash can still be recognised when sent as a request id.
    logs.SECRETS.remember_digests(key.digest for key in keys)


def identify(presented: str | None) -> ApiKey | None:
    """The configured key matching `presented`, checking every key so timing tells nothing."""
    if not presented:
        return None
    candidate = digest(presented)
    found = None
    for key in current_app.extensions[EXTENSION_KEY]:
        if hmac.compare_digest(candidate, key.digest):
            found = key
    return found


def _presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-API-Key") or None


def _refuse(presented: str | None, detail: str) -> Response:
    AUTH_FAILURES.labels("missing" if presented is None else "wrong").inc()
    log.warning("refused API call", extra={"path": request.path, "method": request.method})
    response = json_error(401, detail)
    response.headers["WWW-Authenticate"] = 'Bearer realm="tiketq-payments"'
    return response


def authenticate(*, admin: bool) -> Response | None:
    """None if the request carries a key good enough, else the 401 to answer with."""
    presented = _presented_key()
    key = identify(presented)
    if key is None or (admin and not key.admin):
        needed = "a staff API key" if admin else "an API key"
        return _refuse(presented, f"credentials required: Authorization: Bearer <{needed}>")
    return None


def presents_key() -> bool:
    """Whether the request carries a key at all (a wrong one is refused, never ignored)."""
    return _presented_key() is not None


def request_key() -> ApiKey | None:
    """The configured key this request carries, if any."""
    return identify(_presented_key())


def require_admin(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Refuse the view with 401 unless the request carries a staff key."""

    @functools.wraps(view)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        return authenticate(admin=True) or view(*args, **kwargs)

    return guarded


@click.command("api-key")
@click.argument("name")
def new_api_key(name: str) -> None:
    """Make a new API key: give the key to its holder, put the hash in API_KEYS."""
    key = secrets.token_urlsafe(32)
    click.echo(f"key:   {key}")
    click.echo(f"entry: {name}={HASH_PREFIX}{digest(key).hex()}")
