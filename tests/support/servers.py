"""WSGI apps served over HTTP on loopback from inside the test process."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask
from werkzeug.serving import make_server


def serve_in_thread(app: Flask) -> tuple[str, Any]:
    """Serve a WSGI app on a free loopback port in a daemon thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # A short poll interval keeps shutdown from waiting half a second per test.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    return f"http://127.0.0.1:{server.server_port}", server
