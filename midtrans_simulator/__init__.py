"""A Midtrans-compatible HTTP sandbox that the unmodified midtransclient library can talk to.

It stands in for an external system, so it depends only on the standard library, Flask, Werkzeug,
requests (which sends its HTTP notifications) and segno (which draws the QR images it serves).
"""

from flask import Blueprint, Flask

from . import control, core, notification_control, qr, snap, snapjs
from .notifier import Notifier, configured_urls
from .outbox import Outbox
from .service import EXTENSION_KEY, Simulator, current_simulator
from .store import Store

__all__ = ["bp", "create_app", "init_app"]

bp = Blueprint("midtrans_simulator", __name__)
bp.register_blueprint(snap.bp)
bp.register_blueprint(snapjs.bp)
bp.register_blueprint(core.bp)
bp.register_blueprint(qr.bp)
bp.register_blueprint(control.bp)
bp.register_blueprint(notification_control.bp)


@bp.before_request
def _start_notifier() -> None:
    # Started on first use rather than at import, so that each forked worker gets its own thread.
    current_simulator().notifier.start()


def init_app(
    app: Flask,
    *,
    server_key: str,
    state_path: str,
    url_prefix: str = "/_simulator",
    notification_url: str | None = None,
    time_scale: float = 1.0,
    notification_timeout: float | None = None,
) -> None:
    """Mount the simulator on `app` at `url_prefix`, keeping state in SQLite at `state_path`.

    `notification_url` (comma separated for several) receives HTTP notifications; `time_scale`
    multiplies the notification retry delays and timeout, e.g. 0.001 in tests, unless
    `notification_timeout` sets the timeout in seconds.
    """
    urls = configured_urls(notification_url)
    store = Store(state_path)
    notifier = Notifier(
        Outbox(store), urls=urls, time_scale=time_scale, timeout=notification_timeout
    )
    app.extensions[EXTENSION_KEY] = Simulator(server_key=server_key, store=store, notifier=notifier)
    app.register_blueprint(bp, url_prefix=url_prefix)


def create_app(
    *,
    server_key: str,
    state_path: str,
    notification_url: str | None = None,
    time_scale: float = 1.0,
    notification_timeout: float | None = None,
) -> Flask:
    """Build a standalone app serving the simulator at the root, like Midtrans's own hosts."""
    app = Flask(__name__)
    init_app(
        app,
        server_key=server_key,
        state_path=state_path,
        url_prefix="",
        notification_url=notification_url,
        time_scale=time_scale,
        notification_timeout=notification_timeout,
    )
    return app
