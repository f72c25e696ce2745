"""Blueprint: the ops pages for staff at /ops, with a rate-limited login."""

from __future__ import annotations

from flask import Flask

from tiketq.ops.throttle import limiter
from tiketq.ops.views import bp

__all__ = ["bp", "init_app", "limiter"]


def init_app(app: Flask) -> None:
    """Register the ops pages and the rate limit on their login."""
    app.register_blueprint(bp)
    limiter.init_app(app)
