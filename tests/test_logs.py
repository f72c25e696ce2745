"""Logs: one JSON object per line, a request id on each, and nothing secret or personal."""

from __future__ import annotations

import json

import pytest

from tests.support.config import SERVER_KEY
from tests.support.midtrans import notification
from tiketq import auth
from tiketq.logs import redact, scrub_event

ADMIN_KEY = "ops-admin-key-for-log-test"


@pytest.fixture
def log_lines(log_text):
    """Every log line written while the test runs, parsed."""
    return lambda: [json.loads(line) for line in log_text().splitlines()]


def test_a_whole_payment_leaves_no_secret_or_contact_detail_in_the_logs(
    app, client, order_id, midtrans_simulator, monkeypatch, log_lines
):
    monkeypatch.setitem(app.config, "ADMIN_API_KEYS", [ADMIN_KEY])
    auth.init_app(app)
    customer = {"email": "sari.dewi@example.co.id", "phone": "081234567890", "first_name": "Sari"}
    created = client.post(
        "/payments", json={"order_id": order_id, "amount": 150_000, "customer_details": customer}
    ).get_json()
    body = notification(created["gateway_order_id"], "settlement", payment_type="gopay")
    client.post("/payments/webhook", json=body)
    client.post("/payments/webhook", json={**body, "signature_key": "f" * 128})
    client.post(
        f"/payments/{created['id']}/refund",
        json={"reason": "customer asked"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    midtrans_simulator.fault(status=401, times=1)
    client.post("/payments", json={"order_id": order_id + "B", "amount": 1000})

    lines = log_lines()
    text = json.dumps(lines)
    assert len(lines) > 5
    for secret in (
        SERVER_KEY,
        ADMIN_KEY,
        body["signature_key"],
        "sari.dewi@example.co.id",
        "081234567890",
    ):
        assert secret not in text
    assert all("request_id" in line and "level" in line for line in lines)
    assert any(line.get("message") == "payment created" for line in lines)


def test_a_well_formed_request_id_is_kept_and_echoed(client, log_lines):
    response = client.get("/payments/not-a-payment", headers={"X-Request-ID": "gw-req-12345678"})
    assert response.headers["X-Request-ID"] == "gw-req-12345678"


@pytest.mark.parametrize("incoming", ["short", "has space inside!", "x" * 65, "semi;colon-12345"])
def test_a_malformed_request_id_is_replaced(client, incoming):
    response = client.get("/health", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] != incoming
    assert len(response.headers["X-Request-ID"]) == 32


def test_redaction_covers_keys_tokens_signatures_and_contacts():
    text = (
        "key SB-Mid-server-abcDEF123 sig " + "a" * 128 + " Authorization: Bearer s3cr3t-token "
        "mail budi@example.com phone +6281298765432"
    )
    cleaned = redact({"msg": text, "signature_key": "x", "nested": [{"email": "a@b.co"}]})
    assert (
        cleaned["signature_key"] == "[redacted]" and cleaned["nested"][0]["email"] == "[redacted]"
    )
    for leaked in (
        "SB-Mid-server-abcDEF123",
        "a" * 128,
        "s3cr3t-token",
        "budi@example.com",
        "6281298765432",
    ):
        assert leaked not in cleaned["msg"]


def test_error_reports_get_the_same_redaction():
    event = {
        "request": {"headers": {"Authorization": "Basic U0ItTWlk"}, "data": "sari@example.co.id"}
    }
    scrubbed = scrub_event(event, {})
    assert scrubbed["request"]["headers"]["Authorization"] == "[redacted]"
    assert scrubbed["request"]["data"] == "[email]"
