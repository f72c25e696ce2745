"""The Midtrans adapter, through the unmodified midtransclient, against the simulator over HTTP."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from flask import Flask, redirect

from tests.support.config import SERVER_KEY
from tests.support.midtrans import notification, sign
from tests.support.servers import serve_in_thread
from tiketq.gateway import (
    CheckoutRequest,
    GatewayAuthError,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    InvalidSignature,
    LineItem,
    StatusMismatch,
    TransactionNotFound,
    UntrustedAnswer,
)
from tiketq.gateway.midtrans import ENABLED_PAYMENTS, MidtransGateway, snap_body
from tiketq.payments.rules import Charge


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


def test_status_after_payment_is_a_verified_answer_in_our_words(midtrans_simulator, order):
    adapter = gateway(midtrans_simulator.url)
    adapter.create_checkout(checkout(order))
    midtrans_simulator.pay(order, "gopay", "settlement")

    answer = adapter.get_status(order)

    assert (answer.charge, answer.gateway_status) == (Charge.PAID, "settlement/accept")
    assert (answer.gross_amount, answer.currency) == (Decimal("150000.00"), "IDR")
    assert answer.payment_type == "gopay"
    assert answer.transaction_id == midtrans_simulator.transaction(order)["transaction_id"]
    assert answer.paid_at is not None and answer.refunded is None


def test_an_expired_answer_with_code_407_reads_as_expired(midtrans_simulator, order):
    adapter = gateway(midtrans_simulator.url)
    adapter.create_checkout(checkout(order, method="bank_transfer"))
    midtrans_simulator.pay(order, "bca_va", "expire")
    core = requests.get(
        f"{midtrans_simulator.url}/v2/{order}/status", auth=(SERVER_KEY, ""), timeout=5
    ).json()
    assert (core["status_code"], core["transaction_status"]) == ("407", "expire")

    answer = adapter.get_status(order)

    assert (answer.charge, answer.gateway_status) == (Charge.EXPIRED, "expire/accept")


def test_a_challenged_capture_is_held_for_review(midtrans_simulator, order):
    adapter = gateway(midtrans_simulator.url)
    adapter.create_checkout(checkout(order, method="credit_card"))
    midtrans_simulator.pay(order, "credit_card", "challenge")

    answer = adapter.get_status(order)

    assert (answer.charge, answer.gateway_status) == (Charge.HELD_FOR_REVIEW, "capture/challenge")
    assert answer.details["masked_card"] == "48111111-1114"


def test_refunds_read_as_their_cumulative_refund_amount(midtrans_simulator, order):
    adapter = gateway(midtrans_simulator.url)
    adapter.create_checkout(checkout(order))
    midtrans_simulator.pay(order, "gopay", "settlement")
    adapter.refund(order, refund_key=f"{order}-r1", amount=30_000, reason="seat change")
    adapter.refund(order, refund_key=f"{order}-r2", amount=20_000, reason="meal")

    partly = adapter.get_status(order)
    adapter.refund(order, refund_key=f"{order}-r3", amount=100_000, reason="canceled trip")
    fully = adapter.get_status(order)

    assert (partly.charge, partly.refunded) == (Charge.PARTIALLY_REFUNDED, Decimal("50000.00"))
    assert (fully.charge, fully.refunded) == (Charge.REFUNDED, Decimal("150000.00"))


@pytest.fixture
def answering() -> Iterator[Any]:
    """A Midtrans stand-in whose status endpoint answers the body the test gives it."""
    served: list = []

    def serve(body: dict[str, Any]) -> MidtransGateway:
        app = Flask("answering")
        app.add_url_rule("/v2/<oid>/status", "status", lambda oid: body)
        url, server = serve_in_thread(app)
        served.append(server)
        return gateway(url)

    yield serve
    for server in served:
        server.shutdown()


def status_body(order_id: str, **fields: Any) -> dict[str, Any]:
    """A signed Core API status body of a settled bank transfer; `fields` replace its fields."""
    body = notification(order_id, "settlement", **fields)
    return {**body, "status_message": "Success, transaction is found"}


def test_a_pending_qris_answer_keeps_its_qr_string_and_image(midtrans_simulator, order):
    adapter = gateway(midtrans_simulator.url)
    adapter.create_checkout(checkout(order, method="qris"))
    midtrans_simulator.pay(order, "other_qris", "pending")

    details = adapter.get_status(order).details

    assert details["qr_string"].startswith("000201")
    assert details["qr_code_url"].startswith(f"{midtrans_simulator.url}/v2/qris/")
    # Midtrans's action list ends here: the domain keeps the two addresses, by our names.
    assert "actions" not in details and "deeplink_url" not in details


def test_a_wallets_actions_become_the_qr_image_and_the_app_link(answering, order):
    body = status_body(
        order,
        payment_type="gopay",
        actions=[
            {"name": "generate-qr-code", "method": "GET", "url": "https://api.example/qr"},
            {"name": "deeplink-redirect", "method": "GET", "url": "gojek://gopay/pay?t=1"},
            {"name": "get-status", "method": "GET", "url": "https://api.example/status"},
            {"name": "deeplink-redirect", "url": 42},
            "not an action",
        ],
    )

    details = answering(body).get_status(order).details

    assert details["qr_code_url"] == "https://api.example/qr"
    assert details["deeplink_url"] == "gojek://gopay/pay?t=1"
    assert "actions" not in details


def test_an_answer_about_another_order_is_refused(answering, order):
    adapter = answering(status_body("ORD-SOMEONE-ELSE"))
    with pytest.raises(UntrustedAnswer, match="ORD-SOMEONE-ELSE"):
        adapter.get_status(order)


WRONG_SIGNATURES = {
    "another key": lambda order: sign(order, "200", "150000.00", key="SB-Mid-server-OTHER"),
    "another amount": lambda order: sign(order, "200", "1500.00"),
    "another status code": lambda order: sign(order, "201", "150000.00"),
    "missing": lambda order: None,
}


@pytest.mark.parametrize("wrong", sorted(WRONG_SIGNATURES))
def test_an_answer_with_a_wrong_signature_is_refused(answering, order, wrong):
    body = status_body(order)
    body["signature_key"] = WRONG_SIGNATURES[wrong](order)
    if body["signature_key"] is None:
        del body["signature_key"]
    adapter = answering(body)
    with pytest.raises(UntrustedAnswer, match="answer refused"):
        adapter.get_status(order)


def test_a_signed_answer_for_the_order_is_trusted(answering, order):
    answer = answering(status_body(order)).get_status(order)
    assert (answer.charge, answer.gross_amount) == (Charge.PAID, Decimal("150000.00"))


def test_a_notification_whose_status_code_does_not_fit_is_a_status_mismatch(order):
    adapter = gateway("http://127.0.0.1:9")
    # Signed, so only the fit of status_code and transaction_status can refuse it.
    with pytest.raises(StatusMismatch):
        adapter.verify_notification(notification(order, "settlement", status_code="202"))
    with pytest.raises(StatusMismatch):
        adapter.verify_notification(notification(order, "expire", status_code="407"))


def test_a_fitting_notification_is_a_hint_with_a_key_shared_by_redeliveries(order):
    adapter = gateway("http://127.0.0.1:9")
    body = notification(order, "capture", status_code="201", fraud_status="challenge")

    hint = adapter.verify_notification(body)

    assert (hint.order_id, hint.transaction_status, hint.status_code) == (order, "capture", "201")
    assert adapter.verify_notification(dict(body)).dedupe_key == hint.dedupe_key
    with pytest.raises(InvalidSignature):
        adapter.verify_notification({**body, "gross_amount": "1.00"})


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
