"""Server processes the tests start: a process group of their own, their output read as it comes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
# How long a server may take to start or stop on a busy 2-core machine.
READY_SECONDS = 45
STOP_SECONDS = 30


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group `pgid` is still running."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Served:
    """A command run from the repository's root, its stdout and stderr kept line by line."""

    def __init__(
        self,
        command: list[str],
        env: Mapping[str, str],
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.lines: list[str] = []
        self._on_line = on_line
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a stop reaches gunicorn's workers
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            self.lines.append(line)
            if self._on_line is not None:
                self._on_line(line)

    def output(self) -> str:
        """Everything the process printed so far."""
        return "\n".join(self.lines)

    def wait_until_ready(self, probe: str, deadline: float | None = None) -> None:
        """Poll `probe` until it answers 2xx; fail if the process exits or the deadline passes."""
        deadline = deadline or time.monotonic() + READY_SECONDS
        while True:
            try:
                if requests.get(probe, timeout=5).ok:
                    return
            # Refused before the server listens; a timeout while its workers still boot.
            except (requests.ConnectionError, requests.Timeout):
                pass
            assert time.monotonic() < deadline and self.process.poll() is None, (
                f"{probe} never answered:\n{self.output()}"
            )
            time.sleep(0.2)

    def stop(self) -> str:
        """SIGTERM the process group (SIGKILL if it lingers); returns all it printed."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_SECONDS)
        self.reader.join(STOP_SECONDS)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.output()
