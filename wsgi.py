"""WSGI entry point: gunicorn wsgi:app, and the app of `flask --app wsgi`."""

import sys

from flask import Flask

from tiketq import create_app
from tiketq.config import ConfigError

# gunicorn stops on a worker that exits with this ("App failed to load") instead of starting it
# again and again; flask's CLI exits with it as it is.
APP_LOAD_ERROR = 4


def load() -> Flask:
    """The app, or the configuration's error as one line on stderr and APP_LOAD_ERROR."""
    try:
        return create_app()
    except ConfigError as error:
        # A traceback here would end, under flask's CLI, in a misleading "No such command".
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(APP_LOAD_ERROR) from None


app = load()
