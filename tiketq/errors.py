"""App-wide error handlers: every error is JSON with a detail, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

log = logging.getLogger(__name__)


def json_error(status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> Response:
    """An error response in the API's one shape: {"detail": ..., "errors": [...]}."""
    body = json.dumps({"detail": detail, "errors": errors or []})
    return Response(body, status=status, mimetype="application/json")


def _http_error(exc: HTTPException) -> Response:
    response = json_error(exc.code or 500, exc.description or exc.name)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _database_down(exc: DBAPIError) -> Response:
    # A lost connection is worth a retry; callers and Midtrans both retry on 503.
    log.error("database unavailable: %s", type(exc.orig).__name__)
    response = json_error(503, "database unavailable; retry the request")
    response.headers["Retry-After"] = "5"
    return response


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return json_error(500, "internal error")


def init_app(app: Flask) -> None:
    """Register the handlers on the app."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(OperationalError, _database_down)
    app.register_error_handler(Exception, _unexpected)
