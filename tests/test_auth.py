"""API keys: accepted, rotated, refused and counted; anonymous create kept for the callers."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.support.config import app_config
from tests.support.midtrans import notification
from tiketq import create_app

GATEWAY_KEY = "gateway-key-2026-11"
NEW_GATEWAY_KEY = "gateway-key-2026-12"
STAFF_KEY = "staff-key-ops"


def hashed(name: str, key: str) -> str:
    return f"{name}=sha256:{hashlib.sha256(key.encode()).hexdigest()}"


@pytest.fixture
def guarded(committed):
    """Build an app that requires API keys, with the given key entries.

    Its commits are real, so `committed` truncates them: a notification left stored would be
    applied by a later test's worker round.
    """

    def build(callers: list[str], **extra):
        settings = {
            "API_KEYS": callers,
            "ADMIN_API_KEYS": [hashed("ops", STAFF_KEY)],
            "API_AUTH_REQUIRED": True,
            **extra,
        }
        return committed(**settings).test_client()

    return build


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_reading_needs_a_key_when_auth_is_required(guarded):
    client = guarded([hashed("gateway", GATEWAY_KEY)])
    response = client.get("/payments/order/ORD-NONE")
    assert response.status_code == 401 and response.get_json()["detail"].startswith("credentials")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/payments/order/ORD-NONE", headers=bearer(GATEWAY_KEY)).status_code == 404
    assert (
        client.get("/payments/order/ORD-NONE", headers={"X-API-Key": GATEWAY_KEY}).status_code
        == 404
    )


@pytest.mark.parametrize(
    "header",
    [{"Authorization": "Bearer nope"}, {"X-API-Key": ""}, {"Authorization": "Basic Z2F0ZXdheQ=="}],
)
def test_wrong_or_malformed_credentials_are_refused(guarded, header):
    assert (
        guarded([hashed("gateway", GATEWAY_KEY)])
        .get("/payments/order/X", headers=header)
        .status_code
        == 401
    )


def test_keys_rotate_by_listing_old_and_new_then_dropping_the_old(guarded):
    both = guarded([hashed("gateway", GATEWAY_KEY), hashed("gateway-next", NEW_GATEWAY_KEY)])
    assert both.get("/payments/order/X", headers=bearer(GATEWAY_KEY)).status_code == 404
    assert both.get("/payments/order/X", headers=bearer(NEW_GATEWAY_KEY)).status_code == 404
    rotated = guarded([hashed("gateway-next", NEW_GATEWAY_KEY)])
    assert rotated.get("/payments/order/X", headers=bearer(GATEWAY_KEY)).status_code == 401
    assert rotated.get("/payments/order/X", headers=bearer(NEW_GATEWAY_KEY)).status_code == 404


def test_the_transaction_service_may_create_without_credentials_by_default(guarded, order_id):
    client = guarded([hashed("gateway", GATEWAY_KEY)])
    assert (
        client.post("/payments", json={"order_id": order_id, "amount": 10_000}).status_code == 201
    )


def test_anonymous_create_can_be_closed(guarded, order_id):
    client = guarded([hashed("gateway", GATEWAY_KEY)], API_ALLOW_ANONYMOUS_CREATE=False)
    body = {"order_id": order_id, "amount": 10_000}
    assert client.post("/payments", json=body).status_code == 401
    assert client.post("/payments", json=body, headers=bearer(GATEWAY_KEY)).status_code == 201


def test_a_caller_key_cannot_cancel_or_refund(guarded, order_id):
    client = guarded([hashed("gateway", GATEWAY_KEY)])
    created = client.post("/payments", json={"order_id": order_id, "amount": 10_000}).get_json()
    cancel = f"/payments/{created['id']}/cancel"
    assert client.post(cancel, headers=bearer(GATEWAY_KEY)).status_code == 401
    assert client.post(cancel, headers=bearer(STAFF_KEY)).status_code == 200


def test_the_webhook_needs_no_key_its_signature_is_the_credential(guarded, order_id):
    client = guarded([hashed("gateway", GATEWAY_KEY)])
    client.post("/payments", json={"order_id": order_id, "amount": 150_000})
    assert (
        client.post("/payments/webhook", json=notification(order_id, "settlement")).status_code
        == 200
    )


def test_cancel_and_refund_need_a_staff_key_even_without_required_auth(client, order_id):
    created = client.post("/payments", json={"order_id": order_id, "amount": 10_000}).get_json()
    assert client.post(f"/payments/{created['id']}/cancel").status_code == 401
    assert client.post(f"/payments/{created['id']}/refund", json={"reason": "x"}).status_code == 401


def test_refusals_are_counted(guarded):
    client = guarded([hashed("gateway", GATEWAY_KEY)])
    client.get("/payments/order/X")
    client.get("/payments/order/X", headers=bearer("wrong"))
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'tiketq_api_auth_failures_total\{reason="missing"\} [1-9]', text)
    assert re.search(r'tiketq_api_auth_failures_total\{reason="wrong"\} [1-9]', text)


def test_the_key_command_prints_a_key_and_the_entry_that_accepts_it(guarded):
    app = create_app(app_config())
    output = app.test_cli_runner().invoke(args=["payments", "api-key", "ferries"]).output
    key = re.search(r"key:\s+(\S+)", output).group(1)
    entry = re.search(r"entry:\s+(\S+)", output).group(1)
    assert entry == hashed("ferries", key)
    assert guarded([entry]).get("/payments/order/X", headers=bearer(key)).status_code == 404
