"""The background worker: `flask payments worker` (add --once for cron-style runs)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.exc import OperationalError

from tiketq.auth import new_api_key
from tiketq.extensions import db
from tiketq.gateway import Gateway, current_gateway
from tiketq.outbound import Outbound, current_outbound
from tiketq.payments import audit as invariants
from tiketq.payments import background
from tiketq.staff import accounts

log = logging.getLogger(__name__)

cli = AppGroup("payments", help="Payment background jobs and keys.")
cli.add_command(new_api_key)


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


def _beat(worker_id: str, done: dict[str, int]) -> None:
    # A database that is down already shows in the jobs' errors; the loop keeps going.
    try:
        background.record_heartbeat(worker_id, done)
    except OperationalError as exc:
        db.session.rollback()
        log.error("worker heartbeat failed: %s", type(exc.orig).__name__)


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
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    log.info("worker started", extra={"interval": interval, "worker_id": worker_id})
    while True:
        done = run_once(current_gateway(), current_outbound(), batch=batch)
        _beat(worker_id, done)
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


@cli.command("audit")
def audit() -> None:
    """Check every payment's invariants; exit 1 if any is broken."""
    violations = 0
    for violation in invariants.audit():
        violations += 1
        v = violation
        click.echo(f"{v.rule:<13} {v.order_id:<30} {v.payment_id}  {v.detail}")
    click.echo(f"{violations} violation(s)")
    if violations:
        raise SystemExit(1)


@cli.command("ops-user")
@click.argument("name")
def ops_user(name: str) -> None:
    """Make an OPS_USERS entry for a member of staff: asks for a password, prints name:hash."""
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        click.echo(accounts.user_entry(name, password))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
