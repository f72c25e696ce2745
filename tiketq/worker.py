"""The background worker: `flask payments worker` (add --once for cron-style runs)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.exc import OperationalError

from tiketq.extensions import db
from tiketq.gateway import Gateway, current_gateway
from tiketq.outbound import Outbound, current_outbound
from tiketq.payments import background

log = logging.getLogger(__name__)

cli = AppGroup("payments", help="Payment background jobs.")


def run_once(gateway: Gateway, outbound: Outbound, *, batch: int = 50) -> dict[str, int]:
    """Run every job once; a job that fails (database down) is skipped until the next round."""
    jobs: dict[str, Callable[[], int]] = {
        "reconciled": lambda: background.reconcile_due(gateway, limit=batch),
        "expired": lambda: background.expire_overdue(gateway, limit=batch),
        "reapplied": lambda: background.reapply_inbox(gateway, limit=batch),
        "dispatched": lambda: background.dispatch_outbox(outbound, limit=batch),
        "delivered": lambda: background.deliver_due(outbound, limit=batch),
    }
    done: dict[str, int] = {}
    for name, job in jobs.items():
        try:
            done[name] = job()
        except OperationalError as exc:
            db.session.rollback()
            log.error("worker job %s failed: %s", name, type(exc.orig).__name__)
            done[name] = 0
    return done


@cli.command("worker")
@click.option("--once", is_flag=True, help="Run every job once and exit.")
@click.option("--interval", type=float, help="Seconds between rounds (WORKER_INTERVAL).")
def worker(once: bool, interval: float | None) -> None:
    """Reconcile, expire and deliver until SIGTERM; the round in progress is finished first."""
    interval = interval if interval is not None else current_app.config["WORKER_INTERVAL"]
    batch = current_app.config["WORKER_BATCH"]
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("worker started", extra={"interval": interval})
    while True:
        done = run_once(current_gateway(), current_outbound(), batch=batch)
        db.session.remove()
        if any(done.values()):
            log.info("worker round", extra=done)
        # A full batch means more is waiting: go again at once.
        if once or stop.wait(0 if max(done.values()) >= batch else interval):
            break
    log.info("worker stopped")


@cli.command("resend")
@click.argument("delivery_id", type=int)
def resend(delivery_id: int) -> None:
    """Queue a dead-lettered delivery for another attempt now."""
    delivery = background.resend(delivery_id)
    if delivery is None:
        raise click.ClickException(f"no delivery {delivery_id}")
    click.echo(f"delivery {delivery_id} to {delivery.destination} queued")
