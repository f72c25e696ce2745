"""Structured JSON logs with a request id, and redaction of secrets and personal data."""

from __future__ import annotations

import hashlib
import logging
import re
import string
import sys
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flask import Flask, Response, g, request
from pythonjsonlogger.json import JsonFormatter

if TYPE_CHECKING:
    # Only for the annotations: sentry_sdk is imported when a DSN is configured.
    from sentry_sdk.types import Event, Hint

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Accepted from callers only in this shape, so a header cannot inject text into the logs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# Indonesian mobile numbers, with or without the country code.
_PHONE = re.compile(r"(?<!\d)(?:\+?62|0)8\d{7,12}(?!\d)")
# A Midtrans signature_key is 128 hex characters; nothing else we log looks like that.
_SIGNATURE = re.compile(r"\b[0-9a-fA-F]{128}\b")
_MIDTRANS_KEY = re.compile(r"\b(?:SB-)?Mid-(?:server|client)-[A-Za-z0-9_-]+")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
# Query parameters named for a credential (api_key, key, token, access_token, signature_key,
# password...): their values go, whatever they look like, from logged paths and request lines.
_CREDENTIAL_PARAM = re.compile(
    r"(?i)([?&;](?:[a-z0-9]+[_.-])*"
    r"(?:api[_-]?key|key|token|secret|password|passwd|pwd|signature|sig|auth|authorization|jwt"
    r"|credentials?)=)[^&#\s\"']*"
)
# Settings holding a secret; tiketq.auth remembers the API keys, whose entry form it knows.
SECRET_SETTINGS = (
    "MIDTRANS_SERVER_KEY",
    "METRICS_TOKEN",
    "JWT_SECRET",
    "SECRET_KEY",
    "EVENT_SIGNING_SECRET",
    "SENTRY_DSN",
)
# Shorter values are not looked for: blanking a short word everywhere would garble every line
# (JWT_SECRET's public default is "secret"), and a secret that short protects little anyway.
MIN_SECRET_LENGTH = 8
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_SENSITIVE_FIELDS = {
    "authorization",
    "signature_key",
    "server_key",
    "token",
    "snap_token",
    "email",
    "phone",
}


class Secrets:
    """This process's configured secrets: no log line shows them, no request id may carry them."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._digests: set[bytes] = set()
        self._pattern: re.Pattern[str] | None = None

    def remember(self, values: Iterable[str | None]) -> None:
        """Look for these values from now on, as written or percent-encoded (in a URL)."""
        self._values.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)
        if self._values:
            # Longest first, so that a secret containing another one goes whole.
            longest_first = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(_written_or_encoded, longest_first)))

    def remember_digests(self, digests: Iterable[bytes]) -> None:
        """Also know keys configured only by their SHA-256 (tiketq.auth's hashes)."""
        self._digests.update(digests)

    def redact(self, text: str) -> str:
        """The text with every remembered secret replaced."""
        return text if self._pattern is None else self._pattern.sub("[redacted]", text)

    def found_in(self, text: str) -> bool:
        """Whether the text holds a remembered secret, or is a key configured by its hash."""
        if self._pattern is not None and self._pattern.search(text):
            return True
        return hashlib.sha256(text.encode()).digest() in self._digests


def _written_or_encoded(secret: str) -> str:
    """A pattern for the secret as written or with its reserved characters %-encoded."""
    return "".join(
        re.escape(char)
        if char in _UNRESERVED
        else f"(?:{re.escape(char)}|(?i:{quote(char, safe='')}))"
        for char in secret
    )


# One per process: gunicorn's access log formatter and the app (tiketq.logs.init_app, in each
# worker, since the app is loaded there) share it.
SECRETS = Secrets()


def redact(value: Any) -> Any:
    """The value with secrets, signatures and contact details replaced, recursively."""
    if isinstance(value, str):
        value = SECRETS.redact(value)
        value = _CREDENTIAL_PARAM.sub(r"\1[redacted]", value)
        value = _MIDTRANS_KEY.sub("[midtrans-key]", value)
        value = _BEARER.sub(r"\1 [redacted]", value)
        value = _SIGNATURE.sub("[signature]", value)
        value = _EMAIL.sub("[email]", value)
        return _PHONE.sub("[phone]", value)
    if isinstance(value, dict):
        return {
            k: "[redacted]" if str(k).lower() in _SENSITIVE_FIELDS else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class RedactingJsonFormatter(JsonFormatter):
    """One JSON object per line, with the request id and nothing that must not be logged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", True)
        super().__init__("%(levelname)s %(name)s %(message)s", *args, **kwargs)

    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        log_record.setdefault("request_id", request_id_var.get())
        return {k: redact(v) for k, v in log_record.items()}

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        redacted: str = redact(super().formatException(ei))
        return redacted


def handler(stream: Any = None) -> logging.Handler:
    """A stream handler writing redacted JSON lines."""
    out = logging.StreamHandler(stream or sys.stdout)
    out.setFormatter(RedactingJsonFormatter())
    return out


def configure(level: str = "INFO") -> None:
    """Send every logger (ours, gunicorn's, SQLAlchemy's, requests') through one JSON handler."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, RedactingJsonFormatter) for h in root.handlers):
        return
    root.handlers = [handler()]
    root.setLevel(level)


def _acceptable_request_id(value: str) -> bool:
    """Whether a caller's X-Request-ID may be kept, logged and echoed."""
    # A key pasted into the wrong header would otherwise come back and sit in every log line.
    return (
        bool(_REQUEST_ID.match(value))
        and not _MIDTRANS_KEY.search(value)
        and not SECRETS.found_in(value)
    )


def _start_request() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _acceptable_request_id(incoming) else uuid.uuid4().hex
    g.request_id_token = request_id_var.set(g.request_id)


def _finish_request(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    return response


def _forget_request(_: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        request_id_var.reset(token)


def scrub_event(event: Event, _hint: Hint) -> Event:
    """Sentry's before_send: the same redaction as the logs."""
    redacted: Event = redact(event)
    return redacted


def init_app(app: Flask) -> None:
    """Give every request an id, echoed in X-Request-ID and present in every log line."""
    SECRETS.remember(app.config.get(name) for name in SECRET_SETTINGS)
    if not app.testing:
        configure(app.config["LOG_LEVEL"])
    if app.config["SENTRY_DSN"]:
        import sentry_sdk

        sentry_sdk.init(
            dsn=app.config["SENTRY_DSN"],
            send_default_pii=False,
            before_send=scrub_event,
            environment="production" if app.config["MIDTRANS_IS_PRODUCTION"] else "sandbox",
        )
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.teardown_request(_forget_request)
