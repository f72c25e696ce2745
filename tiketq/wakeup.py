"""Wake-ups for the worker: PostgreSQL's NOTIFY on new inbox rows, or a stop request."""

from __future__ import annotations

import logging
import os
import select
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

# The migration's trigger notifies this channel for every notification waiting to be applied.
CHANNEL = "tiketq_inbox"


class Wakeup:
    """Sleep until a notification is stored, `stop()` is called, or the timeout passes.

    On SQLite there is nothing to listen to: waits just time out, and the worker polls.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._listening: Any = None
        self._stopped = False
        self._stop_read, self._stop_write = os.pipe()
        os.set_blocking(self._stop_write, False)

    def stop(self) -> None:
        """Make the current and every later wait return at once; safe in a signal handler."""
        self._stopped = True
        try:
            os.write(self._stop_write, b"x")
        except BlockingIOError:
            pass  # the pipe is full: a stop is already pending

    def stopped(self) -> bool:
        """Whether stop() was called."""
        return self._stopped

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True if woken by a notification, a stop or a new LISTEN."""
        sources: list[Any] = [self._stop_read]
        fresh = self._listening is None
        listening = self._listen()
        if listening is not None and fresh:
            # What was stored before this LISTEN (since the caller last looked, or while the
            # listener was lost) notified nobody: wake the caller to look at the inbox once.
            return True
        if listening is not None:
            sources.append(listening)
        ready, _, _ = select.select(sources, [], [], max(timeout, 0.0))
        if listening is not None and listening in ready:
            try:
                listening.poll()
                listening.notifies.clear()
            except Exception as exc:
                # The server went away: listen again on the next wait, poll meanwhile.
                log.warning("inbox listener lost: %s", type(exc).__name__)
                self._close()
        return bool(ready)

    def close(self) -> None:
        """Stop listening and release the pipe."""
        self._close()
        os.close(self._stop_read)
        os.close(self._stop_write)

    def _listen(self) -> Any:
        if self._listening is not None or self._engine.dialect.name != "postgresql":
            return self._listening
        try:
            raw = self._engine.raw_connection()
            # Taken before detach(), which drops the fairy's record and with it driver_connection.
            connection = raw.driver_connection
            # Only an invalidated connection has none, and this one was just checked out.
            assert connection is not None
            # Out of the pool for good: a listening connection must stay in autocommit.
            raw.detach()
            # A checkout's ping may have begun a transaction, in which autocommit cannot be set.
            connection.rollback()
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
        except Exception as exc:
            log.warning("cannot listen for new notifications: %s", type(exc).__name__)
            return None
        self._listening = connection
        return connection

    def _close(self) -> None:
        if self._listening is not None:
            try:
                self._listening.close()
            except Exception:  # noqa: S110 - closing a connection that is already gone
                pass
            self._listening = None
