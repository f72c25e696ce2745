"""A Midtrans-compatible HTTP sandbox that the unmodified midtransclient library can talk to.

It stands in for an external system, so it depends only on the standard library, Flask and Werkzeug.
"""

from flask import Blueprint, Flask

from . import control, core, snap
from .service import EXTENSION_KEY, Simulator
from .store import Store

__all__ = ["bp", "create_app", "init_app"]

bp = Blueprint("midtrans_simulator", __name__)
bp.register_blueprint(snap.bp)
bp.register_blueprint(core.bp)
bp.register_blueprint(control.bp)


def init_app(
    app: Flask, *, server_key: str, state_path: str, url_prefix: str = "/_simulator"
) -> None:
    """Mount the simulator on `app` at `url_prefix`, keeping state in SQLite at `state_path`."""
    app.extensions[EXTENSION_KEY] = Simulator(server_key=server_key, store=Store(state_path))
    app.register_blueprint(bp, url_prefix=url_prefix)


def create_app(*, server_key: str, state_path: str) -> Flask:
    """Build a standalone app serving the simulator at the root, like Midtrans's own hosts."""
    app = Flask(__name__)
    init_app(app, server_key=server_key, state_path=state_path, url_prefix="")
    return app
