"""`make run`: migrations, then the Procfile's web and worker under honcho; Ctrl-C stops both."""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
# Generous for a busy 2-core machine; a quiet one is ready in a few seconds.
READY_SECONDS = 45
STOP_SECONDS = 30
# Settings that would pick another database, gateway, address or metrics directory.
CONFIGURING = ("DATABASE_URL", "POSTGRES_", "MIDTRANS_", "GUNICORN_BIND", "PROMETHEUS_", "WEB_PORT")


def load_procfile_worker():
    spec = importlib.util.spec_from_file_location(
        "procfile_worker", ROOT / "scripts" / "procfile_worker.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Run:
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
        # -o: this venv is set up already (pytest runs from it); never reinstall from a test.
        command = ["make", "-o", f"{venv}/.runtime", "run", f"VENV={venv}", f"PORT={port}"]
        self.lines: list[str] = []
        self.events: queue.Queue[str] = queue.Queue()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches it
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self.events.put(line)

    def output(self) -> str:
        return "\n".join(self.lines)

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
                seen = [self.events.get(timeout=remaining).rstrip("\n")]
            except queue.Empty:
                seen = []

    def interrupt(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)

    def kill_everything(self) -> None:
        """After a failure: leave nothing running (the Procfile's processes have own sessions)."""
        for pgid in [self.process.pid, *self.pids().values()]:
            if group_alive(pgid):
                os.killpg(pgid, signal.SIGKILL)
        self.process.wait(STOP_SECONDS)


def wait_for_health(run: Run, url: str, deadline: float) -> requests.Response:
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


@pytest.mark.slow
def test_make_run_serves_the_web_and_runs_the_worker_until_one_ctrl_c_stops_both(tmp_path):
    port = free_port()
    run = Run(tmp_path, port)
    try:
        deadline = time.monotonic() + READY_SECONDS
        health = wait_for_health(run, f"http://127.0.0.1:{port}/health", deadline)
        assert health.json()["status"] == "ok"
        started = run.wait_for_log("worker.1", "worker started", deadline)
        assert started["level"] == "INFO"

        pids = run.pids()
        assert set(pids) == {"web.1", "worker.1"}
        worker = pids["worker.1"]
        cmdline = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
        assert b"payments" in cmdline and b"worker" in cmdline
        # The worker has no simulator of its own: it calls the web process's in-app one.
        environ = dict(
            entry.split(b"=", 1)
            for entry in Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
            if b"=" in entry
        )
        assert environ[b"MIDTRANS_SIMULATOR_URL"] == f"http://127.0.0.1:{port}/_simulator".encode()
        assert requests.get(f"http://127.0.0.1:{port}/_simulator/snap/snap.js", timeout=5).ok

        run.interrupt()
        run.process.wait(STOP_SECONDS)
        run.reader.join(STOP_SECONDS)
        output = run.output()
        assert "web.1 stopped (rc=0)" in output and "worker.1 stopped (rc=0)" in output, output
        for name, pid in pids.items():
            assert not group_alive(pid), f"{name} (pid {pid}) or a child of it is still running"
    finally:
        if run.process.poll() is None or any(group_alive(p) for p in run.pids().values()):
            run.kill_everything()
        run.process.stdout.close()


@pytest.mark.parametrize(
    ("env", "simulator_url"),
    [
        pytest.param({}, "http://127.0.0.1:8093/_simulator", id="nothing-set-uses-the-web-sim"),
        pytest.param(
            {"MIDTRANS_SIMULATOR": "true", "MIDTRANS_SERVER_KEY": "SB-Mid-server-mine"},
            "http://127.0.0.1:8093/_simulator",
            id="forced-simulator-with-a-key-is-still-in-app",
        ),
        pytest.param(
            {"MIDTRANS_SIMULATOR": "true", "MIDTRANS_BASE_URL": "http://127.0.0.1:8004"},
            None,
            id="make-simulator-base-url-is-kept",
        ),
        pytest.param(
            {"MIDTRANS_SERVER_KEY": "SB-Mid-server-abc", "MIDTRANS_CLIENT_KEY": "SB-Mid-client-a"},
            None,
            id="real-keys-mean-no-simulator",
        ),
        pytest.param(
            {"MIDTRANS_SIMULATOR_URL": "http://sim.internal/_simulator"},
            "http://sim.internal/_simulator",
            id="an-explicit-simulator-url-is-kept",
        ),
        pytest.param(
            {"MIDTRANS_SIMULATOR": "maybe"},
            None,
            id="a-bad-setting-is-left-for-the-worker-to-refuse",
        ),
    ],
)
def test_the_procfile_worker_reaches_the_web_simulator_only_when_it_would_be_in_app(
    env, simulator_url
):
    procfile_worker = load_procfile_worker()
    # honcho's PORT for the Procfile's second line is the web's + 100.
    worker_env = procfile_worker.worker_environ({"PORT": "8193", "WEB_PORT": "8093", **env})
    assert worker_env["PORT"] == "8093"
    assert worker_env.get("MIDTRANS_SIMULATOR_URL") == simulator_url
    assert worker_env.get("MIDTRANS_BASE_URL") == env.get("MIDTRANS_BASE_URL")
