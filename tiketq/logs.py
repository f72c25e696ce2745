"""Structured JSON logs with a request id, and redaction of secrets and personal data."""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar
from typing import Any

from flask import Flask, Response, g, request
from pythonjsonlogger.json import JsonFormatter

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
_SENSITIVE_FIELDS = {
    "authorization",
    "signature_key",
    "server_key",
    "token",
    "snap_token",
    "email",
    "phone",
}


def redact(value: Any) -> Any:
    """The value with secrets, signatures and contact details replaced, recursively."""
    if isinstance(value, str):
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
        return redact(super().formatException(ei))


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


def _start_request() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.request_id_token = request_id_var.set(g.request_id)


def _finish_request(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    return response


def _forget_request(_: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        request_id_var.reset(token)


def scrub_event(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any]:
    """Sentry's before_send: the same redaction as the logs."""
    redacted: dict[str, Any] = redact(event)
    return redacted


def init_app(app: Flask) -> None:
    """Give every request an id, echoed in X-Request-ID and present in every log line."""
    if not app.testing:
        configure(app.config["LOG_LEVEL"])
    if app.config["SENTRY_DSN"]:
        import sentry_sdk

        sentry_sdk.init(
            dsn=app.config["SENTRY_DSN"],
            send_default_pii=False,
            before_send=scrub_event,  # type: ignore[arg-type]
            environment="production" if app.config["MIDTRANS_IS_PRODUCTION"] else "sandbox",
        )
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.teardown_request(_forget_request)
