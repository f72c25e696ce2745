"""`make run` started from a test in a session of its own, as a terminal runs it."""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import time
from pathlib import Path

import requests

from tests.support.processes import STOP_SECONDS, Served, group_alive

# Settings that would pick another database, gateway, address or metrics directory.
CONFIGURING = ("DATABASE_URL", "POSTGRES_", "MIDTRANS_", "GUNICORN_BIND", "PROMETHEUS_", "WEB_PORT")


class Run(Served):
    """`make run` in a session of its own, its output read line by line as it comes."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(CONFIGURING) and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
        }
        env.update(
            PORT=str(port),
            DATABASE_URL=f"sqlite:///{tmp_path / 'tiketq.sqlite3'}",
            MIDTRANS_SIMULATOR_STATE=str(tmp_path / "simulator.sqlite3"),
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
            SECRET_KEY="make-run-test",
        )
        venv = sys.prefix
        # Each line as it comes, for the waits below to wake on.
        self.events: queue.Queue[str] = queue.Queue()
        # -o: this venv is set up already (pytest runs from it); never reinstall from a test.
        super().__init__(
            ["make", "-o", f"{venv}/.runtime", "run", f"VENV={venv}", f"PORT={port}"],
            env,
            on_line=self.events.put,
        )

    def pids(self) -> dict[str, int]:
        """honcho's `web.1 started (pid=N)` lines (the Procfile lines exec: N is the process)."""
        found = {}
        for line in self.lines:
            if "| " in line and " started (pid=" in line:
                name = line.split("| ", 1)[1].split(" ", 1)[0]
                found[name] = int(line.rsplit("pid=", 1)[1].rstrip(")"))
        return found

    def wait_for_log(self, process_name: str, message: str, deadline: float) -> dict:
        """The first JSON log record of process_name with this message, as honcho printed it."""
        seen = list(self.lines)
        while True:
            for line in seen:
                prefix, _, record = line.partition("| ")
                if prefix.split()[-1:] == [process_name] and record.startswith("{"):
                    parsed = json.loads(record)
                    if parsed.get("message") == message:
                        return parsed
            remaining = deadline - time.monotonic()
            assert remaining > 0 and self.process.poll() is None, (
                f"no {message!r} from {process_name}:\n{self.output()}"
            )
            try:
                seen = [self.events.get(timeout=remaining)]
            except queue.Empty:
                seen = []

    def interrupt(self) -> None:
        """Ctrl-C, as a terminal sends it to the whole process group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def kill_everything(self) -> None:
        """After a failure: leave nothing running (the Procfile's processes have own sessions)."""
        for pgid in [self.process.pid, *self.pids().values()]:
            if group_alive(pgid):
                os.killpg(pgid, signal.SIGKILL)
        self.process.wait(STOP_SECONDS)


def wait_for_health(run: Run, url: str, deadline: float) -> requests.Response:
    """Poll `url` until it answers 200; fail if `make run` exits or the deadline passes."""
    while True:
        try:
            response = requests.get(url, timeout=5)
            if response.status_code == 200:
                return response
        # Refused before gunicorn listens; a timeout while its workers still boot on a busy machine.
        except (requests.ConnectionError, requests.Timeout):
            pass
        assert time.monotonic() < deadline and run.process.poll() is None, (
            f"{url} never answered:\n{run.output()}"
        )
        # Readiness polling: wake early if make's output shows something new.
        try:
            run.events.get(timeout=0.25)
        except queue.Empty:
            pass
