"""Blueprint: the ops pages for staff at /ops, with a rate-limited login."""

from __future__ import annotations

import logging

from flask import Flask

from tiketq.staff.views import bp, limiter

__all__ = ["bp", "init_app", "limiter"]

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register the ops pages and the rate limit on their login."""
    app.register_blueprint(bp)
    limiter.init_app(app)
    if app.config["MIDTRANS_IS_PRODUCTION"] and app.config["RATELIMIT_STORAGE_URI"] == "memory://":
        log.warning(
            "the ops login rate limit counts per process: with several gunicorn workers, "
            "set RATELIMIT_STORAGE_URI=redis://..."
        )
