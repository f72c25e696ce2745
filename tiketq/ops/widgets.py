"""The numbers of the ops dashboard, gathered from the read-only queries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tiketq.formats import WIB
from tiketq.ops import charts, environment
from tiketq.payments import queries
from tiketq.payments.models import WorkerHeartbeat
from tiketq.payments.status import OPEN, PAID, PaymentStatus

HOURS = [f"{hour:02d}:00" for hour in range(24)]
# Stacking order of the hourly chart, from the bottom: paid, still open, ended unpaid.
CHART_STATUSES = [
    "success",
    "refunded",
    "processing",
    "pending",
    "failed",
    "canceled",
    "expired",
]


@dataclass(frozen=True)
class Today:
    """Payments created today (Western Indonesian Time): by status, by method, and conversion."""

    since: datetime
    by_status: list[queries.StatusTotal]
    by_method: list[queries.MethodTotal]

    @property
    def count(self) -> int:
        """Attempts created today."""
        return sum(total.count for total in self.by_status)

    @property
    def amount(self) -> int:
        """Their amounts added up."""
        return sum(total.amount for total in self.by_status)

    @property
    def paid(self) -> int:
        """Attempts that were paid (success, or refunded since)."""
        return sum(total.count for total in self.by_status if total.status in PAID)

    @property
    def ended(self) -> int:
        """Attempts that are no longer open (neither pending nor processing)."""
        return sum(total.count for total in self.by_status if total.status not in OPEN)

    @property
    def conversion(self) -> float | None:
        """Paid attempts as a share of ended attempts; None before any has ended."""
        return self.paid / self.ended if self.ended else None


# A worker beats after every full round (WORKER_INTERVAL, 5 s by default). None for this long
# means none runs: notifications wait, and nothing is reconciled, expired or delivered.
WORKER_SILENT_AFTER = timedelta(minutes=2)


@dataclass(frozen=True)
class Worker:
    """A worker's last heartbeat, and whether it is recent enough to call the worker alive."""

    beat: WorkerHeartbeat
    alive: bool


def day_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The start and end of the WIB day that holds `now`."""
    start = now.astimezone(WIB).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def today(now: datetime) -> Today:
    """Today's payments, every status listed even at zero."""
    since, until = day_bounds(now)
    found = {total.status: total for total in queries.totals_by_status(since, until)}
    by_status = [found.get(status, queries.StatusTotal(status, 0, 0)) for status in PaymentStatus]
    return Today(since, by_status, queries.totals_by_method(since, until))


def silent_after(interval: float) -> timedelta:
    """How long a worker may go without a beat: two minutes, or three rounds when longer."""
    return max(WORKER_SILENT_AFTER, timedelta(seconds=3 * interval))


def workers(now: datetime, interval: float) -> list[Worker]:
    """The workers heard from lately, newest first, each alive or silent."""
    limit = silent_after(interval)
    return [Worker(beat, now - beat.beat_at <= limit) for beat in queries.worker_heartbeats()]


def worker_silent(listed: list[Worker]) -> bool:
    """Whether no worker is alive, also when none ever beat: the dashboard then warns."""
    return not any(worker.alive for worker in listed)


def gather(now: datetime, config: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the dashboard shows, as of `now`."""
    day = today(now)
    stuck_minutes = config["OPS_STUCK_MINUTES"]
    stuck_count, stuck = queries.stuck_payments(now - timedelta(minutes=stuck_minutes))
    rejected_counts, rejected = queries.rejected_notifications(day.since)
    reconcile_changed, reconcile_checked = queries.last_reconcile()
    listed = workers(now, config["WORKER_INTERVAL"])
    return {
        "now": now,
        "today": day,
        "chart": charts.stacked_bars(
            "Payments per hour today by status (WIB)",
            HOURS,
            {
                (hour, status.value): n
                for (hour, status), n in queries.hourly_counts(day.since).items()
            },
            CHART_STATUSES,
        ),
        "chart_statuses": CHART_STATUSES,
        "key_checks": environment.key_checks(config),
        "stuck_minutes": stuck_minutes,
        "stuck_count": stuck_count,
        "stuck": stuck,
        "review": queries.payments_to_review(),
        "review_reasons": queries.REVIEW_REASONS,
        "rejected_outcomes": [outcome.value for outcome in queries.UNAPPLIED_OUTCOMES],
        "rejected_counts": rejected_counts,
        "rejected": rejected,
        "backlog": queries.outbox_backlog(),
        "dead": queries.dead_deliveries(),
        "workers": listed,
        "worker_silent": worker_silent(listed),
        "reconcile_changed": reconcile_changed,
        "reconcile_checked": reconcile_checked,
    }
