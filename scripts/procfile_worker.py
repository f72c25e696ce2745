"""The Procfile's worker: `flask --app wsgi payments worker`, next to the web process.

honcho gives each Procfile line a PORT of its own (the second line gets the web's + 100), so the
worker would otherwise mount an in-app Midtrans simulator of its own, on a port nobody serves. It
runs instead with the web's port (WEB_PORT, set by `make run`) and, when its configuration would
use the in-app simulator (simulator on, neither MIDTRANS_BASE_URL nor MIDTRANS_SIMULATOR_URL set),
with MIDTRANS_SIMULATOR_URL aimed at the web process's: http://127.0.0.1:$WEB_PORT/_simulator.
Every other configuration (real keys, `make simulator`, an explicit URL) is left as it is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tiketq import config  # noqa: E402


def worker_environ(env: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment: the web's PORT, and the web's simulator when it is in-app."""
    worker_env = dict(env)
    web_port = env.get("WEB_PORT")
    if web_port:
        worker_env["PORT"] = web_port
    try:
        settings = config.from_environ(worker_env, str(ROOT / "instance"))
    except config.ConfigError:
        return worker_env  # the worker itself refuses to start and says what to set
    if settings["MIDTRANS_SIMULATOR_IN_APP"]:
        # The URL the web process's own gateway uses: its in-app simulator on its port.
        worker_env["MIDTRANS_SIMULATOR_URL"] = settings["MIDTRANS_BASE_URL"]
    return worker_env


def main() -> None:
    argv = [sys.executable, "-m", "flask", "--app", "wsgi", "payments", "worker", *sys.argv[1:]]
    os.execve(sys.executable, argv, worker_environ(os.environ))


if __name__ == "__main__":
    main()
