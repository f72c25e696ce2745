"""Prometheus metrics at /metrics, correct across gunicorn workers, labelled by route template."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from tiketq.extensions import db
from tiketq.payments import queries
from tiketq.payments.models import (
    Notification,
    Payment,
    PaymentEvent,
    WorkerHeartbeat,
    status_changed,
    utcnow,
    work_failed,
)
from tiketq.payments.status import NotificationOutcome, PaymentStatus

bp = Blueprint("metrics", __name__)

HTTP_REQUESTS = Counter(
    "tiketq_http_requests_total", "HTTP requests by route template", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "tiketq_http_request_duration_seconds", "HTTP request duration by route template", ["route"]
)
PAYMENTS_CREATED = Counter(
    "tiketq_payments_created_total", "Payment attempts opened, by requested method", ["method"]
)
TRANSITIONS = Counter(
    "tiketq_payment_transitions_total",
    "Payment status changes",
    ["from_status", "to_status", "source"],
)
WEBHOOK_OUTCOMES = Counter(
    "tiketq_webhook_notifications_total", "Midtrans notifications by outcome", ["outcome"]
)
MIDTRANS_LATENCY = Histogram(
    "tiketq_midtrans_request_duration_seconds", "Midtrans API calls", ["operation"]
)
MIDTRANS_ERRORS = Counter(
    "tiketq_midtrans_errors_total", "Failed Midtrans API calls", ["operation", "kind"]
)
WORKER_FAILURES = Counter(
    "tiketq_worker_failures_total",
    "Rows a worker job could not process and left for a retry, by job",
    ["job"],
)
AUTH_FAILURES = Counter(
    "tiketq_api_auth_failures_total",
    "Requests refused for missing or wrong credentials",
    ["reason"],
)


_WAITING = Notification.outcome.in_(
    [NotificationOutcome.RECEIVED.value, NotificationOutcome.FAILED.value]
) & Notification.next_attempt_at.is_not(None)
# Waiting rows use the inbox's partial index; failed ones are few. Annotated: SQLAlchemy types
# a scalar subquery of a count as Any.
_INBOX_BACKLOG: sa.Select[int, int, int] = sa.select(
    sa.select(sa.func.count()).where(_WAITING).scalar_subquery(),
    sa.select(sa.func.count()).where(_WAITING, Notification.attempts > 0).scalar_subquery(),
    sa.select(sa.func.count())
    .where(
        Notification.outcome == NotificationOutcome.FAILED.value,
        Notification.next_attempt_at.is_(None),
    )
    .scalar_subquery(),
)


# The workers' beats, through the index on beat_at.
_LAST_BEAT = sa.select(sa.func.max(WorkerHeartbeat.beat_at))
# Payments turn success mostly in the worker process, whose counters no scrape reads: the
# events table knows for every process. The newest entry of a partial index over successes
# answers, however long ago the last one was. A note on a paid payment is not a new success.
_LAST_SUCCESS = (
    sa.select(PaymentEvent.created_at)
    .where(
        PaymentEvent.to_status == PaymentStatus.SUCCESS.value,
        # Spelled as the partial index ix_payment_events_success is, so that the planner uses it.
        sa.or_(
            PaymentEvent.from_status.is_(None),
            PaymentEvent.from_status != PaymentStatus.SUCCESS.value,
        ),
    )
    .order_by(PaymentEvent.id.desc())
    .limit(1)
)


def _states(name: str, documentation: str, values: dict[str, float]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["state"])
    for state, value in values.items():
        gauge.add_metric([state], value)
    return gauge


def _age(moment: datetime | None) -> float:
    return max(0.0, (utcnow() - moment).total_seconds()) if moment is not None else 0.0


def _timestamp(moment: datetime | None) -> float:
    # 0 for "never", so that an alert on time() minus it fires instead of finding nothing.
    return moment.timestamp() if moment is not None else 0.0


class DatabaseCollector(Collector):
    """Backlogs and signs of life read from the database at scrape time, alike for every worker."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            outbox = queries.outbox_backlog()
            waiting, retrying, failed = db.session.execute(_INBOX_BACKLOG).one()
            last_beat = db.session.scalar(_LAST_BEAT)
            last_success = db.session.scalar(_LAST_SUCCESS)
        except SQLAlchemyError:
            db.session.rollback()
            return
        yield _states(
            "tiketq_outbox_backlog",
            "Outbox work not delivered yet",
            {
                "undispatched": outbox.undispatched,
                "pending": outbox.pending,
                "failing": outbox.failing,
                "dead": outbox.dead,
            },
        )
        yield _states(
            "tiketq_inbox_backlog",
            "Stored notifications not applied yet: waiting, retrying after an error, failed",
            {"waiting": waiting, "retrying": retrying, "failed": failed},
        )
        yield GaugeMetricFamily(
            "tiketq_outbox_oldest_pending_seconds",
            "Age of the oldest outbox message not dispatched or delivery not delivered yet",
            value=_age(outbox.oldest_waiting_at),
        )
        yield GaugeMetricFamily(
            "tiketq_worker_last_beat_timestamp_seconds",
            "When a worker last finished a round, Unix time (0: never)",
            value=_timestamp(last_beat),
        )
        yield GaugeMetricFamily(
            "tiketq_payment_last_success_timestamp_seconds",
            "When a payment last turned success, Unix time (0: never)",
            value=_timestamp(last_success),
        )


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several gunicorn workers: each writes its own files, and a scrape adds them up.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition; optionally behind a bearer token."""
    token = current_app.config["METRICS_TOKEN"]
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token and not hmac.compare_digest(presented.encode(), token.encode()):
        AUTH_FAILURES.labels("metrics").inc()
        return Response("credentials required\n", status=401, mimetype="text/plain")
    registry = _registry()
    database = CollectorRegistry()
    database.register(DatabaseCollector())
    body = generate_latest(registry) + generate_latest(database)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _count_request(response: Response) -> Response:
    # The route template, never the raw path: one series per endpoint, not per payment id.
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        HTTP_LATENCY.labels(route).observe(time.perf_counter() - started)
    return response


def _count_created(_mapper: Any, _connection: Any, payment: Payment) -> None:
    PAYMENTS_CREATED.labels(payment.payment_method or "any").inc()


def _count_failure(job: str, *, error: Exception) -> None:
    WORKER_FAILURES.labels(job).inc()


def _count_transition(_payment: Payment, *, from_status: str, to_status: str, source: str) -> None:
    TRANSITIONS.labels(from_status, to_status, source).inc()


def init_app(app: Flask) -> None:
    """Count requests and payment events; serve /metrics when METRICS_ENABLED."""
    app.before_request(_start_timer)
    app.after_request(_count_request)
    if not event.contains(Payment, "after_insert", _count_created):
        event.listen(Payment, "after_insert", _count_created)
    status_changed.connect(_count_transition)
    work_failed.connect(_count_failure)
    if app.config["METRICS_ENABLED"]:
        app.register_blueprint(bp)
