"""A create retried with its Idempotency-Key while the first is stuck before Midtrans answered."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.payments.models import Payment, utcnow

KEY = {"Idempotency-Key": "create-in-flight"}


@pytest.fixture
def stuck(app, client, order_id, monkeypatch):
    """An attempt committed before its Snap call, whose process never came back (a crash)."""
    body = {"order_id": order_id, "amount": 50_000}
    with app.app_context(), monkeypatch.context() as patch:

        def crash(request):
            raise RuntimeError("the process died mid-call")

        patch.setattr(current_gateway(), "create_checkout", crash)
        assert client.post("/payments", json=body, headers=KEY).status_code == 500
    [payment] = db.session.query(Payment).filter_by(order_id=order_id).all()
    assert (payment.status_detail, payment.snap_token) == ("creating", None)
    return body, payment.id


def test_a_keyed_retry_while_the_create_is_in_flight_is_told_to_retry(client, stuck):
    body, _ = stuck
    response = client.post("/payments", json=body, headers=KEY)
    assert response.status_code == 409
    assert "being created" in response.get_json()["detail"]


def test_a_keyed_retry_after_the_create_was_abandoned_gets_a_fresh_attempt(
    client, stuck, order_id, midtrans_simulator
):
    body, abandoned_id = stuck
    db.session.get(Payment, abandoned_id).created_at = utcnow() - timedelta(minutes=2)
    db.session.commit()

    response = client.post("/payments", json=body, headers=KEY)

    assert response.status_code == 201
    fresh = response.get_json()
    assert fresh["gateway_order_id"] == f"{order_id}~2" and fresh["snap_token"]
    assert midtrans_simulator.transaction(f"{order_id}~2")["token"] == fresh["snap_token"]
    old = db.session.get(Payment, abandoned_id)
    assert (old.status, old.status_detail, old.idempotency_key) == (
        "failed",
        "create_abandoned",
        None,
    )
    assert db.session.get(Payment, uuid.UUID(fresh["id"])).idempotency_key == KEY["Idempotency-Key"]
    replay = client.post("/payments", json=body, headers=KEY)
    assert replay.status_code == 201 and replay.get_json()["id"] == fresh["id"]
