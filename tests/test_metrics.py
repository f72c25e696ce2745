"""Prometheus metrics: low cardinality, the business counters, and several gunicorn workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.support.config import app_config
from tests.support.midtrans import apply_inbox, deliver
from tests.support.processes import free_port
from tiketq import create_app

ROOT = Path(__file__).resolve().parent.parent


def series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def value(text: str, name: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in series(text, name):
        if all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_routes_are_labelled_by_template_whatever_the_ids(client):
    # Other tests in this process have already added their own series.
    before = series(client.get("/metrics").get_data(as_text=True), "tiketq_http_requests_total")
    for _ in range(30):
        client.get(f"/payments/{uuid.uuid4()}")
    text = client.get("/metrics").get_data(as_text=True)

    assert (
        value(text, "tiketq_http_requests_total", route="/payments/<payment_id>", status="404")
        >= 30
    )
    assert not re.search(r'route="/payments/[0-9a-f]{8}-', text)
    assert len(series(text, "tiketq_http_requests_total")) <= len(before) + 2


def test_payments_transitions_webhooks_and_midtrans_calls_are_counted(
    client, order_id, midtrans_simulator
):
    before = client.get("/metrics").get_data(as_text=True)
    created = client.post(
        "/payments", json={"order_id": order_id, "amount": 50_000, "payment_method": "qris"}
    ).get_json()
    midtrans_simulator.pay(created["gateway_order_id"], "other_qris", "settlement")
    body = midtrans_simulator.notification(created["gateway_order_id"])
    deliver(client, midtrans_simulator, created["gateway_order_id"])
    deliver(client, midtrans_simulator, created["gateway_order_id"])
    client.post("/payments/webhook", json={**body, "signature_key": "0" * 128})
    stored = client.get("/metrics").get_data(as_text=True)
    # The door only stores; the worker asks Midtrans once for both deliveries and applies.
    apply_inbox()
    after = client.get("/metrics").get_data(as_text=True)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("tiketq_payments_created_total", method="qris") == 1
    assert (
        grew(
            "tiketq_payment_transitions_total",
            from_status="pending",
            to_status="success",
            source="webhook",
        )
        == 1
    )
    assert grew("tiketq_webhook_notifications_total", outcome="received") == 2
    assert grew("tiketq_webhook_notifications_total", outcome="bad_signature") == 1
    assert grew("tiketq_midtrans_request_duration_seconds_count", operation="snap.create") == 1
    assert grew("tiketq_midtrans_request_duration_seconds_count", operation="core.status") == 1
    assert "tiketq_outbox_backlog{" in after
    assert 'tiketq_inbox_backlog{state="waiting"} 2.0' in stored
    assert 'tiketq_inbox_backlog{state="waiting"} 0.0' in after


def test_midtrans_errors_are_counted_by_operation_and_kind(client, order_id, midtrans_simulator):
    midtrans_simulator.fault(status=503, times=1)
    client.post("/payments", json={"order_id": order_id, "amount": 50_000})
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        value(
            text, "tiketq_midtrans_errors_total", operation="snap.create", kind="GatewayUnavailable"
        )
        >= 1
    )


def test_metrics_can_require_a_token(database, midtrans_simulator):
    guarded = create_app(
        app_config(MIDTRANS_BASE_URL=midtrans_simulator.url, METRICS_TOKEN="scrape-me")
    )
    client = guarded.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200


def test_metrics_can_be_switched_off(database, midtrans_simulator):
    off = create_app(app_config(MIDTRANS_BASE_URL=midtrans_simulator.url, METRICS_ENABLED=False))
    assert off.test_client().get("/metrics").status_code == 404


@pytest.mark.slow
def test_counts_add_up_across_gunicorn_workers(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "3",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'metrics.sqlite3'}",
        "MIDTRANS_SIMULATOR_STATE": str(tmp_path / "sim.sqlite3"),
    }
    gunicorn = Path(sys.executable).parent / "gunicorn"
    server = subprocess.Popen(
        [str(gunicorn), "--config", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{base}/health", timeout=5)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    pytest.fail("gunicorn did not start")
                time.sleep(0.2)

        def health_count() -> float:
            text = requests.get(f"{base}/metrics", timeout=5).text
            return value(text, "tiketq_http_requests_total", route="/health")

        before = health_count()
        with requests.Session() as http:
            for _ in range(60):
                http.get(f"{base}/health", headers={"Connection": "close"}, timeout=5)
        totals = {health_count() - before for _ in range(5)}
    finally:
        server.terminate()
        server.wait(timeout=20)
    # Sixty requests, wherever each landed, in every scrape.
    assert totals == {60.0}
