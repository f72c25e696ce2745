"""gunicorn settings; every value can be overridden from the environment."""

import os
import shutil

# Loopback unless asked: the in-app Midtrans simulator must not reach the local network by default.
# The image sets GUNICORN_BIND=0.0.0.0:8000, its container's network being its own.
bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8003')}")
# Threads let the in-app Midtrans simulator answer this process's own calls to it.
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Longer than the Midtrans connect + read timeouts, so a slow gateway never kills a worker.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
max_requests = 2000
max_requests_jitter = 200
accesslog = "-"
# No %(u)s: it is the Basic-auth user, which for Midtrans calls is the server key.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s" request_id=%({x-request-id}o)s'
errorlog = "-"

# gunicorn's own logs in the service's JSON format, with the same redaction.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "tiketq.logs.RedactingJsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"level": os.environ.get("LOG_LEVEL", "INFO").upper(), "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"handlers": ["stdout"], "propagate": False},
    },
}


def on_starting(server):
    """Start each master with empty multiprocess metric files (old workers' pids are gone)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the multiprocess metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
