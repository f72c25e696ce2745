"""`make run`: migrations, then the Procfile's web and worker under honcho; Ctrl-C stops both."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
import requests

from tests.support.make_run import Run, wait_for_health
from tests.support.processes import READY_SECONDS, STOP_SECONDS, free_port, group_alive

ROOT = Path(__file__).resolve().parent.parent


def load_procfile_worker():
    spec = importlib.util.spec_from_file_location(
        "procfile_worker", ROOT / "scripts" / "procfile_worker.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
