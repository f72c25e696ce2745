"""Run the simulator standalone: `python -m midtrans_simulator --port 8004`."""

import argparse
import os

from werkzeug.serving import run_simple

from . import create_app


def main(argv: list[str] | None = None) -> None:
    """Parse command-line options and serve the simulator until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m midtrans_simulator",
        description="Serve a Midtrans-compatible sandbox.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8004)
    parser.add_argument(
        "--server-key",
        default=os.environ.get("MIDTRANS_SERVER_KEY", "SB-Mid-server-SIMULATOR"),
        help="key clients must send (default: $MIDTRANS_SERVER_KEY or SB-Mid-server-SIMULATOR)",
    )
    parser.add_argument("--state", default="instance/simulator.sqlite3", help="SQLite state file")
    parser.add_argument(
        "--notification-url",
        help="where to POST HTTP notifications, comma separated for several (default: nowhere)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply notification retry delays and timeout, e.g. 0.01 (default: 1)",
    )
    parser.add_argument(
        "--notification-timeout",
        type=float,
        help="seconds to wait for the notification URL's answer (default: 15 x --time-scale, "
        "at least 0.5)",
    )
    args = parser.parse_args(argv)
    app = create_app(
        server_key=args.server_key,
        state_path=args.state,
        notification_url=args.notification_url,
        time_scale=args.time_scale,
        notification_timeout=args.notification_timeout,
    )
    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main()
