"""A worker applying stored notifications in a thread, for tests that serve the app over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask

from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.payments import notifications


@contextmanager
def inbox_worker(app: Flask, *, poll: float = 0.05) -> Iterator[None]:
    """Run the worker's inbox job in a loop until the block ends, as `flask payments worker` does.

    The notification URL only stores what Midtrans sends; this applies it, asking the app's
    current gateway (read every round, so a fixture may swap it after the worker starts).
    Anything the job raised fails the test when the block ends.
    """
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        with app.app_context():
            while not stop.is_set():
                try:
                    notifications.apply_waiting(current_gateway())
                except Exception as exc:  # reported when the block ends
                    failures.append(exc)
                finally:
                    db.session.remove()
                stop.wait(poll)

    thread = threading.Thread(target=run, name="inbox-worker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the inbox worker did not stop"
    assert failures == [], f"the inbox worker raised: {failures!r}"
