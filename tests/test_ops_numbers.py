"""Ops numbers that fire when they should: backlog age, a silent worker, the alert rules."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ops_day import NOW
from tests.support.pages import text_of
from tests.support.staff import STAFF, log_in
from tiketq import metrics
from tiketq.extensions import db
from tiketq.ops import display, limiter, views
from tiketq.payments import heartbeats
from tiketq.payments.models import (
    Delivery,
    DeliveryStatus,
    OutboxMessage,
    Payment,
    PaymentEvent,
)

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "docs" / "alerts.yml"
PROMTOOL = shutil.which("promtool")
EXPECTED_ALERTS = {
    "TiketqWorkerSilent",
    "TiketqOutboxBacklogOld",
    "TiketqDeadLetters",
    "TiketqInboxFailed",
    "TiketqBadSignatureRate",
    "TiketqMidtransErrors",
    "TiketqNoPaymentSucceeded",
}


@pytest.fixture(autouse=True)
def staff_at_now(app, monkeypatch):
    """One member of staff, a fresh login limit, and the dashboard's and /metrics' clock at NOW."""
    monkeypatch.setitem(app.config, "OPS_USERS", [STAFF])
    monkeypatch.setattr(views, "utcnow", lambda: NOW)
    monkeypatch.setattr(metrics, "utcnow", lambda: NOW)
    limiter.reset()


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def a_payment() -> Payment:
    """A stored payment to hang outbox messages on; nothing asks Midtrans about it."""
    order_id = f"ORD-{uuid.uuid4().hex[:12].upper()}"
    payment = Payment(
        order_id=order_id,
        gateway_order_id=order_id,
        amount=150_000,
        expires_at=NOW + timedelta(hours=1),
        request_fingerprint="seeded",
        created_at=ago(hours=1),
    )
    db.session.add(payment)
    db.session.flush()
    return payment


def message(payment: Payment, event_type: str, at: datetime, **fields: Any) -> OutboxMessage:
    row = OutboxMessage(
        payment_id=payment.id,
        event_type=event_type,
        payload={"order_id": payment.order_id},
        created_at=at,
        **fields,
    )
    db.session.add(row)
    return row


def undispatched(count: int, oldest: datetime) -> None:
    """`count` messages no worker has turned into deliveries, the oldest at `oldest`."""
    for index in range(count):
        message(a_payment(), "payment.succeeded", oldest + timedelta(seconds=index))
    db.session.commit()


def dashboard(client) -> str:
    log_in(client)
    response = client.get("/ops")
    assert response.status_code == 200
    return response.text


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.text


def gauge(text: str, name: str) -> float:
    [line] = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


# The backlog's age: undispatched messages wait as much as deliveries do.


def test_undispatched_messages_age_the_backlog_on_the_dashboard(client):
    undispatched(28, ago(minutes=12))
    page = dashboard(client)
    assert text_of(page, "backlog-undispatched") == "28"
    assert text_of(page, "backlog-oldest") == "12 min"


def test_undispatched_messages_age_the_metrics_gauge(client):
    undispatched(28, ago(minutes=12))
    text = scrape(client)
    assert 'tiketq_outbox_backlog{state="undispatched"} 28.0' in text
    assert gauge(text, "tiketq_outbox_oldest_pending_seconds") == 720.0


@pytest.mark.parametrize(
    ("message_minutes", "delivery_minutes", "shown", "seconds"),
    [(12, 30, "30 min", 1800.0), (45, 30, "45 min", 2700.0)],
)
def test_the_oldest_of_messages_and_waiting_deliveries_counts(
    client, message_minutes, delivery_minutes, shown, seconds
):
    undispatched(1, ago(minutes=message_minutes))
    dispatched = message(
        a_payment(), "payment.succeeded", ago(hours=3), dispatched_at=ago(minutes=delivery_minutes)
    )
    db.session.flush()
    for status, minutes in ((DeliveryStatus.PENDING, delivery_minutes), ("delivered", 120)):
        db.session.add(
            Delivery(
                message_id=dispatched.id,
                destination=f"to-{status}",
                url="http://receiver.invalid/",
                status=status,
                created_at=ago(minutes=minutes),
            )
        )
    db.session.commit()
    assert text_of(dashboard(client), "backlog-oldest") == shown
    assert gauge(scrape(client), "tiketq_outbox_oldest_pending_seconds") == seconds


def test_an_empty_backlog_is_zero_seconds_old(client):
    assert gauge(scrape(client), "tiketq_outbox_oldest_pending_seconds") == 0.0
    assert text_of(dashboard(client), "backlog-oldest") == "nothing waiting"


# The worker: a warning when none has beaten for two minutes, and a gauge to alert on.


def test_the_dashboard_warns_when_no_worker_ever_beat(client):
    page = dashboard(client)
    warning = text_of(page, "worker-silent")
    assert "No worker has ever reported" in warning
    assert "flask --app wsgi payments worker" in warning
    assert 'role="alert"' in re.search(r'<p[^>]*id="worker-silent"[^>]*>', page).group(0)


def test_the_dashboard_warns_when_the_last_beat_is_three_minutes_old(client):
    heartbeats.record_heartbeat("worker-a:101", {"applied": 0}, now=ago(minutes=3))
    heartbeats.record_heartbeat("worker-b:102", {"applied": 0}, now=ago(hours=2))
    warning = text_of(dashboard(client), "worker-silent")
    assert "No worker has reported for 3 min" in warning
    assert "2026-03-14 14:57:00 WIB" in warning


@pytest.mark.parametrize("seconds", [10, 110])
def test_a_recent_beat_raises_no_warning(client, seconds):
    heartbeats.record_heartbeat("worker-old:7", {"applied": 0}, now=ago(hours=2))
    heartbeats.record_heartbeat("worker-a:101", {"applied": 0}, now=ago(seconds=seconds))
    page = dashboard(client)
    assert 'id="worker-silent"' not in page
    worker = re.search(r'id="worker".*?</section>', page, re.S).group(0)
    assert "alive" in worker[worker.index("worker-a:101") :]


def test_a_long_worker_interval_allows_three_rounds(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "WORKER_INTERVAL", 60.0)
    heartbeats.record_heartbeat("worker-a:101", {"applied": 0}, now=ago(seconds=150))
    assert 'id="worker-silent"' not in dashboard(client)


def test_the_last_beat_is_a_gauge_and_zero_before_any(client):
    assert gauge(scrape(client), "tiketq_worker_last_beat_timestamp_seconds") == 0.0
    heartbeats.record_heartbeat("worker-a:101", {"applied": 0}, now=ago(minutes=3))
    heartbeats.record_heartbeat("worker-b:102", {"applied": 0}, now=ago(hours=2))
    last = gauge(scrape(client), "tiketq_worker_last_beat_timestamp_seconds")
    assert last == ago(minutes=3).timestamp()


def test_the_last_success_is_a_gauge_from_the_events(client):
    assert gauge(scrape(client), "tiketq_payment_last_success_timestamp_seconds") == 0.0
    payment = a_payment()
    for from_status, to_status, minutes in (
        (None, "pending", 50),
        ("pending", "success", 40),
        # A later note on a paid payment is not a new success.
        ("success", "success", 5),
    ):
        db.session.add(
            PaymentEvent(
                payment_id=payment.id,
                from_status=from_status,
                to_status=to_status,
                source="webhook",
                created_at=ago(minutes=minutes),
            )
        )
    db.session.commit()
    last = gauge(scrape(client), "tiketq_payment_last_success_timestamp_seconds")
    assert last == ago(minutes=40).timestamp()


# Customer fields in words.


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("first_name", "First name"),
        ("last_name", "Last name"),
        ("email", "Email"),
        ("phone", "Phone"),
        ("billing_address", "Billing address"),
    ],
)
def test_customer_fields_are_labelled_in_words(key, label):
    assert display.customer_label(key) == label


def test_the_payment_page_labels_customer_fields_in_words(client):
    payment = a_payment()
    payment.customer = {"first_name": "Sari", "last_name": "Dewi", "email": "sari@example.co.id"}
    db.session.commit()
    log_in(client)
    page = client.get(f"/ops/payments/{payment.id}").text
    customer = re.search(r'id="customer".*?</section>', page, re.S).group(0)
    labels = re.findall(r"<dt>(.*?)</dt>", customer.split("<h3>")[0])
    assert sorted(labels) == ["Email", "First name", "Last name"]


# docs/alerts.yml: valid rules, on metrics that exist, that fire when they should.


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def exposed_names(text: str) -> set[str]:
    """Every sample name a scrape shows or declares (a labelled counter may have no sample yet)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, [""]))
    return names


def test_the_alert_rules_are_valid():
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    if PROMTOOL:
        checked = subprocess.run(
            [PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_every_metric_an_alert_uses_is_in_a_scrape(client):
    exposed = exposed_names(scrape(client))
    for rule in alert_rules():
        used = set(re.findall(r"\btiketq_\w+", rule["expr"]))
        assert used, rule["alert"]
        assert used <= exposed, (rule["alert"], used - exposed)


def expected(alert: str) -> list[dict[str, Any]]:
    """The one alert promtool should see firing: the rule's own labels and annotations."""
    [rule] = [rule for rule in alert_rules() if rule["alert"] == alert]
    return [{"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}]


def case(series: dict[str, str], alert: str, at: str, fires: bool) -> dict[str, Any]:
    """A promtool test: `series` (name: values per minute), and whether `alert` fires `at`."""
    return {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "alert_rule_test": [
            {"eval_time": at, "alertname": alert, "exp_alerts": expected(alert) if fires else []}
        ],
    }


def series(name: str, **labels: str) -> str:
    """A series as one web instance exposes it."""
    inside = ",".join(f'{key}="{value}"' for key, value in {"instance": "web-1", **labels}.items())
    return f"{name}{{{inside}}}"


BEAT = series("tiketq_worker_last_beat_timestamp_seconds")
OLDEST = series("tiketq_outbox_oldest_pending_seconds")
DEAD = series("tiketq_outbox_backlog", state="dead")
INBOX_FAILED = series("tiketq_inbox_backlog", state="failed")
RECEIVED = series("tiketq_webhook_notifications_total", outcome="received")
FORGED = series("tiketq_webhook_notifications_total", outcome="bad_signature")
CALLS = series("tiketq_midtrans_request_duration_seconds_count", operation="snap.create")
DOWN = series("tiketq_midtrans_errors_total", operation="snap.create", kind="GatewayTimeout")
NOT_FOUND = series(
    "tiketq_midtrans_errors_total", operation="core.status", kind="TransactionNotFound"
)
SUCCESS = series("tiketq_payment_last_success_timestamp_seconds")

# promtool's clock starts at 1970-01-01 00:00 UTC, 07:00 WIB; a value per minute.
ALERT_CASES: list[tuple[dict[str, str], str, str, bool]] = [
    # A worker beating every minute; one that stopped at minute 5; one that never beat; none seen.
    ({BEAT: "0+60x30"}, "TiketqWorkerSilent", "30m", False),
    ({BEAT: "0+60x5 300x25"}, "TiketqWorkerSilent", "7m", False),
    ({BEAT: "0+60x5 300x25"}, "TiketqWorkerSilent", "10m", True),
    ({BEAT: "0x30"}, "TiketqWorkerSilent", "10m", True),
    ({OLDEST: "0x30"}, "TiketqWorkerSilent", "10m", True),
    # The oldest message waits a minute longer each minute: over 10 min, for 5 min.
    ({OLDEST: "0+60x30"}, "TiketqOutboxBacklogOld", "14m", False),
    ({OLDEST: "0+60x30"}, "TiketqOutboxBacklogOld", "20m", True),
    ({OLDEST: "30x30"}, "TiketqOutboxBacklogOld", "30m", False),
    ({DEAD: "0x30"}, "TiketqDeadLetters", "30m", False),
    ({DEAD: "0 0 1x28"}, "TiketqDeadLetters", "10m", True),
    ({INBOX_FAILED: "0 0 2x28"}, "TiketqInboxFailed", "10m", True),
    ({INBOX_FAILED: "0x30"}, "TiketqInboxFailed", "10m", False),
    # Half the notifications forged; one lone forgery among many good ones.
    ({RECEIVED: "0+10x30", FORGED: "0+10x30"}, "TiketqBadSignatureRate", "20m", True),
    ({RECEIVED: "0+10x30", FORGED: "0 1x29"}, "TiketqBadSignatureRate", "20m", False),
    # Midtrans times out on half the calls; "not found" answers are normal and never count.
    ({CALLS: "0+10x30", DOWN: "0+5x30"}, "TiketqMidtransErrors", "20m", True),
    ({CALLS: "0+10x30", NOT_FOUND: "0+10x30"}, "TiketqMidtransErrors", "20m", False),
    # Last success the evening before (22:00 WIB): quiet at 07:30, loud from 08:05 WIB on.
    ({SUCCESS: "-32400x200"}, "TiketqNoPaymentSucceeded", "30m", False),
    ({SUCCESS: "-32400x200"}, "TiketqNoPaymentSucceeded", "70m", True),
    ({SUCCESS: "0+60x200"}, "TiketqNoPaymentSucceeded", "3h", False),
    # 23:00 WIB: hours without a success at night are normal.
    ({SUCCESS: "0x1000"}, "TiketqNoPaymentSucceeded", "16h", False),
    ({SUCCESS: "0x1000"}, "TiketqNoPaymentSucceeded", "14h", True),
]


@pytest.mark.slow
@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install -y prometheus")
def test_the_alerts_fire_when_they_should(tmp_path):
    tests = tmp_path / "alerts_test.yml"
    cases = [case(*each) for each in ALERT_CASES]
    tests.write_text(
        yaml.safe_dump({"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": cases})
    )
    checked = subprocess.run(
        [PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
