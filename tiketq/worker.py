"""The background worker: `flask payments worker` (add --once for cron-style runs)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.exc import OperationalError

from tiketq.auth import new_api_key
from tiketq.extensions import db
from tiketq.gateway import Gateway, current_gateway
from tiketq.legacy_cli import import_legacy
from tiketq.ops import accounts
from tiketq.outbound import Outbound, current_outbound
from tiketq.payments import audit as invariants
from tiketq.payments import heartbeats, notifications, outbox, reconcile, retention
from tiketq.wakeup import Wakeup

log = logging.getLogger(__name__)

cli = AppGroup("payments", help="Payment background jobs and keys.")
cli.add_command(new_api_key)
cli.add_command(import_legacy)


def run_once(gateway: Gateway, outbound: Outbound, *, batch: int = 50) -> dict[str, int]:
    """Run every job once; a job that fails (database down) is skipped until the next round."""
    keep = retention.Retention.from_config(current_app.config)
    return _run(
        {
            "applied": lambda: _apply(gateway, batch),
            "reconciled": lambda: reconcile.reconcile_due(gateway, limit=batch),
            "expired": lambda: reconcile.expire_overdue(gateway, limit=batch),
            "dispatched": lambda: outbox.dispatch_outbox(outbound, limit=batch),
            "delivered": lambda: outbox.deliver_due(outbound, limit=batch),
            # One bounded slice of the daily pass, so that no round waits behind a big first
            # one; a slice that purged a batch's worth brings the next round at once.
            "purged": lambda: retention.purge_when_due(keep),
        }
    )


def apply_inbox(gateway: Gateway, *, batch: int = 50) -> dict[str, int]:
    """Apply the waiting notifications only: what a wake-up between full rounds does."""
    return _run({"applied": lambda: _apply(gateway, batch)})


def _apply(gateway: Gateway, batch: int) -> int:
    # SQLite takes one writer at a time: threads would only queue for its lock.
    postgresql = db.engine.dialect.name == "postgresql"
    threads = current_app.config["WORKER_INBOX_THREADS"] if postgresql else 1
    return notifications.apply_waiting(gateway, limit=batch, threads=threads)


def _run(jobs: dict[str, Callable[[], int]]) -> dict[str, int]:
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
        heartbeats.record_heartbeat(worker_id, done)
    except OperationalError as exc:
        db.session.rollback()
        log.error("worker heartbeat failed: %s", type(exc.orig).__name__)


@cli.command("worker")
@click.option("--once", is_flag=True, help="Run every job once and exit.")
@click.option("--interval", type=float, help="Seconds between full rounds (WORKER_INTERVAL).")
def worker(once: bool, interval: float | None) -> None:
    """Apply notifications as they arrive; reconcile, expire and deliver every round until SIGTERM.

    The round in progress is finished first. A stored notification wakes the worker at once on
    PostgreSQL (LISTEN); otherwise the inbox is looked at every WORKER_INBOX_POLL seconds.
    """
    config = current_app.config
    interval = interval if interval is not None else config["WORKER_INTERVAL"]
    batch, poll = config["WORKER_BATCH"], config["WORKER_INBOX_POLL"]
    wakeup = Wakeup(db.engine)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: wakeup.stop())
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    log.info("worker started", extra={"interval": interval, "worker_id": worker_id})
    next_round = 0.0
    while not wakeup.stopped():
        full_round = time.monotonic() >= next_round
        if full_round:
            done = run_once(current_gateway(), current_outbound(), batch=batch)
            _beat(worker_id, done)
            next_round = time.monotonic() + interval
            if any(done.values()):
                log.info("worker round", extra=done)
        else:
            done = apply_inbox(current_gateway(), batch=batch)
        db.session.remove()
        if once:
            break
        # A full batch means more is waiting: go again at once (all jobs, if it was a full round).
        more = max(done.values()) >= batch
        if more and full_round:
            next_round = 0.0
        wakeup.wait(0.0 if more else min(poll, max(0.0, next_round - time.monotonic())))
    wakeup.close()
    log.info("worker stopped")


@cli.command("resend")
@click.argument("delivery_id", type=int)
def resend(delivery_id: int) -> None:
    """Queue a dead-lettered delivery for another attempt now."""
    delivery = outbox.resend(delivery_id)
    if delivery is None:
        raise click.ClickException(f"no delivery {delivery_id}")
    click.echo(f"delivery {delivery_id} to {delivery.destination} queued")


@cli.command("audit")
@click.option("--full", is_flag=True, help="Check every payment, not only what changed.")
def audit(full: bool) -> None:
    """Check the payments changed since the last clean audit (or all); exit 1 if any is broken."""
    run = invariants.start(full=full)
    everything = run.since is None
    if everything and not full:
        click.echo("no clean audit on record: checking every payment", err=True)
    # Progress and timings go to stderr: scripts read the violations and the count on stdout.
    with click.progressbar(
        length=invariants.estimate() if everything else 0,
        label="auditing payments",
        hidden=not everything,
        file=sys.stderr,
    ) as bar:
        for checked, found in run.batches():
            for v in found:
                click.echo(f"{v.rule:<13} {v.order_id:<30} {v.payment_id}  {v.detail}")
            bar.update(checked)
    seconds = run.finish()
    if everything:
        rate = run.checked / seconds if seconds else 0.0
        click.echo(
            f"checked {run.checked:,} payments in {seconds:.1f} s ({rate:,.0f} payments/s)",
            err=True,
        )
    else:
        margin = invariants.MARGIN.total_seconds() / 60
        click.echo(
            f"checked {run.checked:,} payments changed since {run.since:%Y-%m-%d %H:%M:%S} UTC"
            f" (the last clean audit's start less {margin:.0f} minutes) in {seconds:.1f} s",
            err=True,
        )
    click.echo(f"{run.violations} violation(s)")
    if run.violations:
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


@cli.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
def purge(dry_run: bool) -> None:
    """Purge what is past its retention, to the end, and record the pass in maintenance_runs."""
    keep = retention.Retention.from_config(current_app.config)
    if dry_run:
        counts = retention.would_purge(keep)
        ending = "dry run: nothing changed"
    else:
        run = retention.purge(keep)
        counts = run.summary
        took = (run.finished_at or run.started_at) - run.started_at
        ending = f"purge run {run.id} finished in {took.total_seconds():.1f} s"
    for kind, description in retention.KINDS.items():
        click.echo(f"{kind:<11} {counts.get(kind, 0):>10}  {description}")
    click.echo(ending)
