"""The Midtrans adapter, through the unmodified midtransclient, against the simulator over HTTP."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import pytest
from flask import Flask, redirect

from tests.conftest import SERVER_KEY, serve_in_thread
from tiketq.gateway import (
    CheckoutRequest,
    GatewayAuthError,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    LineItem,
    TransactionNotFound,
)
from tiketq.gateway.midtrans import ENABLED_PAYMENTS, MidtransGateway, snap_body


def gateway(url: str, **overrides) -> MidtransGateway:
    settings = {
        "server_key": SERVER_KEY,
        "client_key": "SB-Mid-client-TESTKEY",
        "is_production": False,
        "base_url": url,
        "timeout": (1.0, 2.0),
        **overrides,
    }
    return MidtransGateway(**settings)


def checkout(
    order_id: str, amount: int = 150_000, method: str | None = "e_wallet"
) -> CheckoutRequest:
    return CheckoutRequest(
        gateway_order_id=order_id,
        amount=amount,
        items=(LineItem(id=order_id, name="Ferry Merak - Bakauheni", price=amount, quantity=1),),
        customer={"email": "budi@example.co.id"},
        payment_method=method,
        starts_at=datetime(2026, 11, 26, 3, 0, tzinfo=UTC),
        expires_in_minutes=60,
    )


@pytest.fixture
def order() -> str:
    return f"GW-{uuid.uuid4().hex[:10]}"


def test_checkout_returns_a_token_and_redirect_url(midtrans_simulator, order):
    page = gateway(midtrans_simulator.url).create_checkout(checkout(order))
    assert page.token == midtrans_simulator.transaction(order)["token"]
    assert page.redirect_url.endswith(page.token)


def test_snap_body_maps_methods_and_states_expiry_in_jakarta_time():
    body = snap_body(checkout("ORD-1", method="retail"))
    assert body["enabled_payments"] == ["indomaret", "alfamart"]
    assert body["credit_card"] == {"secure": True}
    assert body["expiry"] == {
        "start_time": "2026-11-26 10:00:00 +0700",
        "unit": "minute",
        "duration": 60,
    }
    assert body["page_expiry"] == {"unit": "minute", "duration": 60}


@pytest.mark.parametrize("method", sorted(ENABLED_PAYMENTS))
def test_every_method_maps_to_codes_midtrans_accepts(midtrans_simulator, order, method):
    gateway(midtrans_simulator.url).create_checkout(checkout(order, method=method))
    assert (
        midtrans_simulator.transaction(order)["request"]["enabled_payments"]
        == ENABLED_PAYMENTS[method]
    )


def test_a_duplicate_order_id_is_rejected_with_midtrans_message(midtrans_simulator, order):
    adapter = gateway(midtrans_simulator.url)
    adapter.create_checkout(checkout(order))
    with pytest.raises(GatewayRejected) as rejected:
        adapter.create_checkout(checkout(order))
    assert rejected.value.messages == ["transaction_details.order_id has already been taken"]


def test_status_before_a_method_is_chosen_is_not_found(midtrans_simulator, order):
    adapter = gateway(midtrans_simulator.url)
    adapter.create_checkout(checkout(order))
    with pytest.raises(TransactionNotFound):
        adapter.get_status(order)


def test_status_after_payment_carries_midtrans_fields(midtrans_simulator, order):
    adapter = gateway(midtrans_simulator.url)
    adapter.create_checkout(checkout(order))
    midtrans_simulator.pay(order, "gopay", "settlement")

    status = adapter.get_status(order)

    assert (status.order_id, status.transaction_status, status.status_code) == (
        order,
        "settlement",
        "200",
    )
    assert status.raw["gross_amount"] == "150000.00" and len(status.raw["signature_key"]) == 128


def test_cancel_and_expire_move_pending_transactions(midtrans_simulator, order):
    adapter = gateway(midtrans_simulator.url)
    adapter.create_checkout(checkout(order))
    midtrans_simulator.pay(order, "gopay", "pending")
    assert adapter.cancel(order).transaction_status == "cancel"

    other = order + "b"
    adapter.create_checkout(checkout(other))
    midtrans_simulator.pay(other, "gopay", "pending")
    expired = adapter.expire(other)
    assert (expired.transaction_status, expired.status_code) == ("expire", "407")


def test_cancelling_a_settled_transaction_is_rejected(midtrans_simulator, order):
    adapter = gateway(midtrans_simulator.url)
    adapter.create_checkout(checkout(order))
    midtrans_simulator.pay(order, "gopay", "settlement")
    with pytest.raises(GatewayRejected) as rejected:
        adapter.cancel(order)
    assert rejected.value.messages == ["Merchant cannot modify the status of the transaction"]


def test_a_retried_refund_key_refunds_once(midtrans_simulator, order):
    adapter = gateway(midtrans_simulator.url)
    adapter.create_checkout(checkout(order))
    midtrans_simulator.pay(order, "gopay", "settlement")

    first = adapter.refund(order, refund_key=f"{order}-r1", amount=50_000, reason="seat change")
    again = adapter.refund(order, refund_key=f"{order}-r1", amount=50_000, reason="seat change")

    assert first.transaction_status == again.transaction_status == "partial_refund"
    assert len(midtrans_simulator.transaction(order)["refunds"]) == 1


def test_a_wrong_server_key_is_an_auth_error(midtrans_simulator, order):
    with pytest.raises(GatewayAuthError):
        gateway(midtrans_simulator.url, server_key="SB-Mid-server-WRONG").create_checkout(
            checkout(order)
        )


def test_a_slow_gateway_times_out_instead_of_hanging(midtrans_simulator, order):
    midtrans_simulator.fault(delay_seconds=1.5, times=1)
    started = datetime.now(UTC)
    with pytest.raises(GatewayTimeout):
        gateway(midtrans_simulator.url, timeout=(1.0, 0.3)).create_checkout(checkout(order))
    assert (datetime.now(UTC) - started).total_seconds() < 1.4


def test_a_closed_port_is_unavailable(order):
    with pytest.raises(GatewayUnavailable):
        gateway("http://127.0.0.1:9").get_status(order)


def test_a_redirect_is_not_followed():
    followed = []
    app = Flask("redirector")
    app.add_url_rule("/v2/<oid>/status", "status", lambda oid: redirect("/elsewhere", 302))
    app.add_url_rule(
        "/elsewhere", "elsewhere", lambda: followed.append(1) or {"status_code": "200"}
    )
    url, server = serve_in_thread(app)
    try:
        with pytest.raises(GatewayUnavailable):
            gateway(url).get_status("ORD-1")
    finally:
        server.shutdown()
    assert followed == []


def test_the_server_key_never_reaches_logs_or_repr(midtrans_simulator, order, caplog):
    caplog.set_level(logging.DEBUG)
    adapter = gateway(midtrans_simulator.url)
    midtrans_simulator.fault(status=500, times=1)
    with pytest.raises(GatewayUnavailable):
        adapter.create_checkout(checkout(order))
    with pytest.raises(GatewayAuthError):
        gateway(midtrans_simulator.url, server_key="SB-Mid-server-OTHERSECRET").get_status(order)

    assert SERVER_KEY not in repr(adapter)
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "midtrans snap.create failed" in logged
    assert SERVER_KEY not in logged and "OTHERSECRET" not in logged
