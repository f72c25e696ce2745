"""Prometheus metrics at /metrics, correct across gunicorn workers, labelled by route template."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterator
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
from tiketq.payments.models import (
    Delivery,
    Notification,
    OutboxMessage,
    Payment,
    status_changed,
    utcnow,
    work_failed,
)
from tiketq.payments.status import NotificationOutcome

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
# Waiting rows use the inbox's partial index; failed ones are few.
_INBOX_BACKLOG = sa.select(
    sa.select(sa.func.count()).where(_WAITING).scalar_subquery(),
    sa.select(sa.func.count()).where(_WAITING, Notification.attempts > 0).scalar_subquery(),
    sa.select(sa.func.count())
    .where(
        Notification.outcome == NotificationOutcome.FAILED.value,
        Notification.next_attempt_at.is_(None),
    )
    .scalar_subquery(),
)


class OutboxCollector(Collector):
    """Outbox and inbox backlogs read from the database at scrape time, alike for every worker."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            pending, failing, dead, oldest = db.session.execute(
                sa.select(
                    sa.func.count().filter(Delivery.status == "pending"),
                    sa.func.count().filter(Delivery.status == "pending", Delivery.attempts > 0),
                    sa.func.count().filter(Delivery.status == "dead"),
                    sa.func.min(Delivery.created_at).filter(Delivery.status == "pending"),
                )
            ).one()
            undispatched = db.session.scalar(
                sa.select(sa.func.count()).where(OutboxMessage.dispatched_at.is_(None))
            )
            waiting, retrying, failed = db.session.execute(_INBOX_BACKLOG).one()
        except SQLAlchemyError:
            db.session.rollback()
            return
        backlog = GaugeMetricFamily(
            "tiketq_outbox_backlog", "Outbox work not delivered yet", labels=["state"]
        )
        backlog.add_metric(["undispatched"], undispatched or 0)
        backlog.add_metric(["pending"], pending)
        backlog.add_metric(["failing"], failing)
        backlog.add_metric(["dead"], dead)
        yield backlog
        inbox = GaugeMetricFamily(
            "tiketq_inbox_backlog",
            "Stored notifications not applied yet: waiting, retrying after an error, failed",
            labels=["state"],
        )
        inbox.add_metric(["waiting"], waiting)
        inbox.add_metric(["retrying"], retrying)
        inbox.add_metric(["failed"], failed)
        yield inbox
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "tiketq_outbox_oldest_pending_seconds", "Age of the oldest pending delivery", value=age
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
    outbox = CollectorRegistry()
    outbox.register(OutboxCollector())
    body = generate_latest(registry) + generate_latest(outbox)
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
