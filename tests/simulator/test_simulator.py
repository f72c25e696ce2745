"""Midtrans simulator: exact Snap/Core answers, control API, faults, and the real midtransclient."""

import base64
import hashlib
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import midtransclient
import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from midtrans_simulator import create_app, init_app
from tests.support.config import SERVER_KEY as CONFTEST_SERVER_KEY

SERVER_KEY = "SB-Mid-server-TEST"
UNAUTHORIZED_SNAP = {
    "error_messages": [
        "Access denied due to unauthorized transaction, please check client or server key",
        "Visit https://snap-docs.midtrans.com/#request-headers for more details",
    ]
}
CANNOT_MODIFY = {
    "status_code": "412",
    "status_message": "Merchant cannot modify the status of the transaction",
}
INVALID_AMOUNT = {
    "status_code": "414",
    "status_message": "Refund request is rejected due to invalid amount",
}


def basic_auth(username: str = SERVER_KEY, password: str = "") -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic_auth()
AUTH_SESSION = {
    "Authorization": "Basic " + base64.b64encode(f"{CONFTEST_SERVER_KEY}:".encode()).decode()
}


@pytest.fixture
def sim_app(tmp_path) -> Flask:
    return create_app(server_key=SERVER_KEY, state_path=str(tmp_path / "sim.sqlite3"))


@pytest.fixture
def http(sim_app):
    return sim_app.test_client()


def create(http, order_id: str = "ORDER-1", amount: int = 10000, **extra) -> dict:
    body = {"transaction_details": {"order_id": order_id, "gross_amount": amount}, **extra}
    response = http.post("/snap/v1/transactions", json=body, headers=AUTH)
    assert response.status_code == 201, response.json
    return response.json


def pay(http, order_id: str, method: str, outcome: str) -> dict:
    response = http.post(
        f"/control/transactions/{order_id}/pay", json={"method": method, "outcome": outcome}
    )
    assert response.status_code == 200, response.json
    return response.json


def status(http, key: str) -> dict:
    response = http.get(f"/v2/{key}/status", headers=AUTH)
    assert response.status_code == 200
    return response.json


def snap_errors(http, body) -> tuple[int, dict]:
    response = http.post("/snap/v1/transactions", json=body, headers=AUTH)
    return response.status_code, response.json


def expected_signature(order_id: str, status_code: str, gross_amount: str) -> str:
    return hashlib.sha512((order_id + status_code + gross_amount + SERVER_KEY).encode()).hexdigest()


# --- Snap: create transaction -------------------------------------------------------------------


def test_snap_token_is_issued_with_an_absolute_redirect_url(http):
    body = create(http)

    assert uuid.UUID(body["token"]).version == 4
    assert body["redirect_url"] == f"http://localhost/snap/v4/redirection/{body['token']}"


def test_request_without_order_id_is_refused_with_midtrans_message(http):
    assert snap_errors(http, {"transaction_details": {"gross_amount": 10000}}) == (
        400,
        {"error_messages": ["transaction_details.order_id is required"]},
    )


def test_order_id_longer_than_50_characters_is_refused(http):
    code, body = snap_errors(
        http, {"transaction_details": {"order_id": "A" * 51, "gross_amount": 1}}
    )

    assert code == 400
    assert body == {
        "error_messages": ["transaction_details.order_id is too long (maximum is 50 characters)"]
    }


@pytest.mark.parametrize("order_id", ["A/1", "A 1", "A#1", "pesanan-ü"])
def test_order_id_with_characters_outside_midtrans_set_is_refused(http, order_id):
    code, body = snap_errors(
        http, {"transaction_details": {"order_id": order_id, "gross_amount": 1}}
    )

    assert code == 400
    assert body["error_messages"][0].startswith("transaction_details.order_id is invalid")


def test_order_id_may_use_every_allowed_symbol_and_50_characters(http):
    create(http, order_id="Az09-_~." + "x" * 42)


@pytest.mark.parametrize(
    ("gross_amount", "message"),
    [
        (10.5, "transaction_details.gross_amount must be an integer, decimals are not allowed"),
        ("10000", "transaction_details.gross_amount must be an integer"),
        (True, "transaction_details.gross_amount must be an integer"),
        (0, "transaction_details.gross_amount must be greater than 0"),
        (-500, "transaction_details.gross_amount must be greater than 0"),
        (None, "transaction_details.gross_amount is required"),
    ],
)
def test_gross_amount_must_be_a_positive_integer(http, gross_amount, message):
    details = {"order_id": "ORDER-1"}
    if gross_amount is not None:
        details["gross_amount"] = gross_amount

    assert snap_errors(http, {"transaction_details": details}) == (
        400,
        {"error_messages": [message]},
    )


def test_item_details_that_do_not_sum_to_gross_amount_are_refused(http):
    code, body = snap_errors(
        http,
        {
            "transaction_details": {"order_id": "ORDER-1", "gross_amount": 10000},
            "item_details": [{"id": "seat", "price": 4000, "quantity": 2, "name": "Seat"}],
        },
    )

    assert (code, body) == (
        400,
        {
            "error_messages": [
                "transaction_details.gross_amount is not equal to the sum of item_details"
            ]
        },
    )


def test_item_details_with_a_discount_line_that_sum_to_gross_amount_are_accepted(http):
    create(
        http,
        amount=9000,
        item_details=[
            {"id": "seat", "price": 5000, "quantity": 2, "name": "Seat"},
            {"id": "promo", "price": -1000, "quantity": 1, "name": "Promo"},
        ],
    )


def test_every_invalid_item_line_is_reported(http):
    code, body = snap_errors(
        http,
        {
            "transaction_details": {"order_id": "ORDER-1", "gross_amount": 10000},
            "item_details": [
                {"price": 1.5, "quantity": 1, "name": "Half"},
                {"price": 1000, "quantity": 0, "name": "None"},
                {"price": 1000, "quantity": 1},
            ],
        },
    )

    assert code == 400
    assert body["error_messages"] == [
        "item_details[0].price must be an integer, decimals are not allowed",
        "item_details[1].quantity must be greater than or equal to 1",
        "item_details[2].name is required",
    ]


def test_duplicate_order_id_is_refused_with_midtrans_message(http):
    create(http, order_id="ORDER-DUP")

    code, body = snap_errors(
        http, {"transaction_details": {"order_id": "ORDER-DUP", "gross_amount": 5000}}
    )

    assert (code, body) == (
        400,
        {"error_messages": ["transaction_details.order_id has already been taken"]},
    )


def test_unknown_enabled_payment_code_is_named_in_the_error(http):
    code, body = snap_errors(
        http,
        {
            "transaction_details": {"order_id": "ORDER-1", "gross_amount": 1000},
            "enabled_payments": ["bca_va", "bitcoin"],
        },
    )

    assert (code, body) == (
        400,
        {"error_messages": ["enabled_payments contains unknown payment type: bitcoin"]},
    )


def test_enabled_payments_accepts_codes_and_aliases(http):
    create(
        http, enabled_payments=["credit_card", "bank_transfer", "cstore", "other_qris", "kredivo"]
    )


@pytest.mark.parametrize("raw", [b"[1, 2]", b"not json", b""])
def test_body_that_is_not_a_json_object_is_refused(http, raw):
    response = http.post(
        "/snap/v1/transactions", data=raw, headers=AUTH, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json == {"error_messages": ["Request body must be a JSON object"]}


def test_several_problems_are_reported_together(http):
    code, body = snap_errors(http, {"transaction_details": {}, "enabled_payments": ["cash"]})

    assert code == 400
    assert body["error_messages"] == [
        "transaction_details.order_id is required",
        "transaction_details.gross_amount is required",
        "enabled_payments contains unknown payment type: cash",
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic_auth("SB-Mid-server-WRONG"),
        basic_auth(SERVER_KEY, "secret"),
        {"Authorization": "Bearer x"},
    ],
)
def test_snap_refuses_a_wrong_or_missing_server_key_with_midtrans_401(http, headers):
    body = {"transaction_details": {"order_id": "ORDER-1", "gross_amount": 1000}}

    response = http.post("/snap/v1/transactions", json=body, headers=headers)

    assert (response.status_code, response.json) == (401, UNAUTHORIZED_SNAP)


def test_expiry_sets_the_payment_deadline(http):
    create(http, expiry={"start_time": "2030-01-01 10:00:00 +0700", "unit": "hours", "duration": 2})

    assert pay(http, "ORDER-1", "bca_va", "pending")["expiry_time"] == "2030-01-01 12:00:00"


def test_payment_deadline_defaults_to_24_hours_and_page_expiry_is_kept(http):
    create(http, page_expiry={"unit": "minute", "duration": 30})

    state = http.get("/control/transactions/ORDER-1").json
    created = datetime.fromisoformat(state["created_at"])
    assert datetime.fromisoformat(state["expiry_time"]) - created == timedelta(hours=24)
    assert datetime.fromisoformat(state["page_expiry_time"]) - created == timedelta(minutes=30)


def test_invalid_expiry_is_refused(http):
    code, body = snap_errors(
        http,
        {
            "transaction_details": {"order_id": "ORDER-1", "gross_amount": 1000},
            "expiry": {"start_time": "tomorrow", "unit": "week", "duration": 0},
        },
    )

    assert code == 400
    assert body["error_messages"] == [
        "expiry.unit must be one of day, hour, minute",
        "expiry.duration must be a positive integer",
        "expiry.start_time must be formatted as yyyy-MM-dd HH:mm:ss Z",
    ]


# --- Snap: session cancel ----------------------------------------------------------------------


def test_snap_session_cancel_reports_when_and_refuses_a_second_cancel(http):
    token = create(http)["token"]

    first = http.post(f"/snap/v1/transactions/{token}/cancel", headers=AUTH)
    second = http.post(f"/snap/v1/transactions/{token}/cancel", headers=AUTH)

    assert first.status_code == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.json["canceled_at"])
    assert (second.status_code, second.json) == (
        400,
        {"error_messages": ["token already canceled"]},
    )
    refused = http.post(
        "/control/transactions/ORDER-1/pay", json={"method": "gopay", "outcome": "settlement"}
    )
    assert refused.status_code == 409


def test_snap_session_cancel_of_unknown_token_is_404(http):
    response = http.post(f"/snap/v1/transactions/{uuid.uuid4()}/cancel", headers=AUTH)

    assert (response.status_code, response.json) == (404, {"error_messages": ["token not found"]})


def test_snap_session_cancel_after_payment_is_refused_as_in_progress(http):
    token = create(http)["token"]
    pay(http, "ORDER-1", "gopay", "settlement")

    response = http.post(f"/snap/v1/transactions/{token}/cancel", headers=AUTH)

    assert (response.status_code, response.json) == (
        400,
        {"error_messages": ["Transaction is on progress"]},
    )


def test_snap_session_cancel_voids_a_payment_still_waiting(http):
    token = create(http)["token"]
    pay(http, "ORDER-1", "bni_va", "pending")

    assert http.post(f"/snap/v1/transactions/{token}/cancel", headers=AUTH).status_code == 200
    assert status(http, "ORDER-1")["transaction_status"] == "cancel"


def test_snap_session_cancel_needs_the_server_key(http):
    token = create(http)["token"]

    response = http.post(f"/snap/v1/transactions/{token}/cancel", headers=basic_auth("nope"))

    assert (response.status_code, response.json) == (401, UNAUTHORIZED_SNAP)


# --- Core API ----------------------------------------------------------------------------------


def test_core_refuses_a_wrong_server_key_with_http_401(http):
    response = http.get("/v2/ORDER-1/status", headers=basic_auth("SB-Mid-server-WRONG"))

    assert response.status_code == 401
    assert response.json["status_code"] == "401"
    assert response.json["status_message"] == "Unknown Merchant server_key/id"
    assert uuid.UUID(response.json["id"])


def test_status_of_an_unknown_order_is_404_inside_an_http_200_body(http):
    body = status(http, "NOPE")

    assert body["status_code"] == "404"
    assert body["status_message"] == "Transaction doesn't exist."
    assert uuid.UUID(body["id"])


def test_status_is_404_until_the_traveller_chooses_a_method(http):
    create(http)

    assert status(http, "ORDER-1")["status_code"] == "404"
    assert pay(http, "ORDER-1", "bca_va", "pending")["status_code"] == "201"
    assert status(http, "ORDER-1")["status_code"] == "201"


def test_status_after_settlement_is_signed_as_midtrans_signs_it(http):
    create(http, amount=1200000)
    pay(http, "ORDER-1", "gopay", "settlement")

    body = status(http, "ORDER-1")

    assert body["status_code"] == "200"
    assert body["status_message"] == "Success, transaction is found"
    assert body["gross_amount"] == "1200000.00"
    assert body["currency"] == "IDR"
    assert body["merchant_id"] == "G141532850"
    assert body["signature_key"] == expected_signature("ORDER-1", "200", "1200000.00")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", body["settlement_time"])


def test_status_can_be_read_by_transaction_id(http):
    create(http)
    transaction_id = pay(http, "ORDER-1", "bca_va", "pending")["transaction_id"]

    assert status(http, transaction_id)["order_id"] == "ORDER-1"


def test_status_echoes_custom_fields(http):
    create(http, custom_field1="booking-77")
    pay(http, "ORDER-1", "gopay", "pending")

    assert status(http, "ORDER-1")["custom_field1"] == "booking-77"


@pytest.mark.parametrize(
    ("method", "payment_type", "check"),
    [
        ("bca_va", "bank_transfer", lambda b: len(b["va_numbers"][0]["va_number"]) == 11),
        ("bni_va", "bank_transfer", lambda b: b["va_numbers"][0]["bank"] == "bni"),
        ("bri_va", "bank_transfer", lambda b: len(b["va_numbers"][0]["va_number"]) == 18),
        (
            "permata_va",
            "bank_transfer",
            lambda b: "va_numbers" not in b and len(b["permata_va_number"]) == 16,
        ),
        ("echannel", "echannel", lambda b: b["biller_code"] == "70012" and b["bill_key"].isdigit()),
        ("indomaret", "cstore", lambda b: b["store"] == "indomaret" and "fraud_status" not in b),
        ("alfamart", "cstore", lambda b: b["store"] == "alfamart" and b["payment_code"].isdigit()),
        (
            "other_qris",
            "qris",
            lambda b: {b["issuer"], b["acquirer"], b["transaction_type"]} == {"gopay", "on-us"},
        ),
        ("gopay", "gopay", lambda b: b["fraud_status"] == "accept"),
    ],
)
def test_each_method_reports_its_payment_type_and_fields(http, method, payment_type, check):
    create(http)

    body = pay(http, "ORDER-1", method, "pending")

    assert body["payment_type"] == payment_type
    assert body["transaction_status"] == "pending"
    assert check(body)


def test_paid_card_is_captured_with_fraud_accept(http):
    create(http)

    body = pay(http, "ORDER-1", "credit_card", "settlement")

    assert (body["transaction_status"], body["fraud_status"], body["status_code"]) == (
        "capture",
        "accept",
        "200",
    )
    assert body["masked_card"] == "48111111-1114"
    assert "settlement_time" not in body


def test_challenged_card_is_held_until_approved(http):
    create(http)
    held = pay(http, "ORDER-1", "credit_card", "challenge")

    approved = http.post("/v2/ORDER-1/approve", json={}, headers=AUTH).json

    assert (held["transaction_status"], held["fraud_status"], held["status_code"]) == (
        "capture",
        "challenge",
        "201",
    )
    assert approved["status_message"] == "Success, transaction is approved"
    assert (approved["transaction_status"], approved["fraud_status"]) == ("capture", "accept")


def test_challenged_card_can_be_denied(http):
    create(http)
    pay(http, "ORDER-1", "credit_card", "challenge")

    denied = http.post("/v2/ORDER-1/deny", json={}, headers=AUTH).json

    assert (denied["status_code"], denied["transaction_status"], denied["fraud_status"]) == (
        "200",
        "deny",
        "deny",
    )


def test_approving_an_unchallenged_transaction_is_refused_with_412(http):
    create(http)
    pay(http, "ORDER-1", "credit_card", "capture")

    assert http.post("/v2/ORDER-1/approve", json={}, headers=AUTH).json == CANNOT_MODIFY


def test_cancel_of_a_pending_transaction_succeeds(http):
    create(http)
    pay(http, "ORDER-1", "bca_va", "pending")

    body = http.post("/v2/ORDER-1/cancel", json={}, headers=AUTH).json

    assert (body["status_code"], body["status_message"]) == (
        "200",
        "Success, transaction is canceled",
    )
    assert body["transaction_status"] == "cancel"
    assert status(http, "ORDER-1")["status_code"] == "202"


def test_cancel_of_a_settled_transaction_is_refused_with_412_in_an_http_200_body(http):
    create(http)
    pay(http, "ORDER-1", "bca_va", "settlement")

    response = http.post("/v2/ORDER-1/cancel", json={}, headers=AUTH)

    assert (response.status_code, response.json) == (200, CANNOT_MODIFY)


def test_actions_on_an_order_without_core_transaction_answer_404_body(http):
    create(http)

    for action in ("cancel", "expire", "refund", "approve"):
        body = http.post(f"/v2/ORDER-1/{action}", json={}, headers=AUTH).json
        assert body["status_code"] == "404", action


def test_expire_of_a_pending_transaction_answers_407_and_status_then_reports_407(http):
    create(http)
    pay(http, "ORDER-1", "permata_va", "pending")

    expired = http.post("/v2/ORDER-1/expire", json={}, headers=AUTH).json
    after = status(http, "ORDER-1")

    assert (expired["status_code"], expired["status_message"]) == (
        "407",
        "Success, transaction has expired",
    )
    assert expired["transaction_status"] == "expire"
    assert (after["status_code"], after["transaction_status"]) == ("407", "expire")
    assert after["signature_key"] == expected_signature("ORDER-1", "407", "10000.00")


def test_expire_of_a_settled_transaction_is_refused_with_412(http):
    create(http)
    pay(http, "ORDER-1", "bca_va", "settlement")

    assert http.post("/v2/ORDER-1/expire", json={}, headers=AUTH).json == CANNOT_MODIFY


def test_partial_then_full_refund_tracks_the_cumulative_amount(http):
    create(http)
    pay(http, "ORDER-1", "gopay", "settlement")

    partial = http.post(
        "/v2/ORDER-1/refund",
        json={"refund_key": "r1", "amount": 4000, "reason": "seat"},
        headers=AUTH,
    )
    rest = http.post("/v2/ORDER-1/refund", json={"refund_key": "r2"}, headers=AUTH)
    after = status(http, "ORDER-1")

    assert partial.json["status_message"] == "Success, refund request is approved"
    assert (partial.json["transaction_status"], partial.json["refund_amount"]) == (
        "partial_refund",
        "4000.00",
    )
    assert partial.json["gross_amount"] == "10000.00"
    assert isinstance(partial.json["refund_chargeback_id"], int)
    assert (rest.json["transaction_status"], rest.json["refund_amount"]) == ("refund", "6000.00")
    assert (after["transaction_status"], after["refund_amount"]) == ("refund", "10000.00")
    assert [r["refund_key"] for r in after["refunds"]] == ["r1", "r2"]


def test_repeated_refund_key_returns_the_original_refund_without_refunding_again(http):
    create(http)
    pay(http, "ORDER-1", "credit_card", "capture")
    http.post("/control/transactions/ORDER-1/transition", json={"transaction_status": "settlement"})

    first = http.post(
        "/v2/ORDER-1/refund", json={"refund_key": "once", "amount": 3000}, headers=AUTH
    ).json
    again = http.post(
        "/v2/ORDER-1/refund", json={"refund_key": "once", "amount": 3000}, headers=AUTH
    ).json

    assert again == first
    assert status(http, "ORDER-1")["refund_amount"] == "3000.00"


@pytest.mark.parametrize("amount", [0, -1, 10001])
def test_refund_amount_outside_what_is_left_is_rejected_with_414(http, amount):
    create(http)
    pay(http, "ORDER-1", "other_qris", "settlement")

    assert (
        http.post("/v2/ORDER-1/refund", json={"amount": amount}, headers=AUTH).json
        == INVALID_AMOUNT
    )


def test_refund_of_a_bank_transfer_is_refused_with_412(http):
    create(http)
    pay(http, "ORDER-1", "bca_va", "settlement")

    assert http.post("/v2/ORDER-1/refund", json={}, headers=AUTH).json == CANNOT_MODIFY


def test_refund_of_an_unsettled_payment_is_refused_with_412(http):
    create(http)
    pay(http, "ORDER-1", "gopay", "pending")

    assert http.post("/v2/ORDER-1/refund", json={"amount": 100}, headers=AUTH).json == CANNOT_MODIFY


def test_direct_refund_is_approved_by_the_bank(http):
    create(http)
    pay(http, "ORDER-1", "shopeepay", "settlement")

    body = http.post(
        "/v2/ORDER-1/refund/online/direct", json={"refund_key": "d1"}, headers=AUTH
    ).json

    assert body["status_message"] == "Success, refund request is approved by the bank"
    assert body["transaction_status"] == "refund"


def test_refund_with_a_malformed_amount_is_a_400_body(http):
    create(http)
    pay(http, "ORDER-1", "gopay", "settlement")

    body = http.post("/v2/ORDER-1/refund", json={"amount": "lots"}, headers=AUTH).json

    assert body["status_code"] == "400"
    assert body["validation_messages"] == ["amount must be an integer"]


def refund(http, amount: int | None = None, key: str = "r1") -> None:
    params = {"refund_key": key} if amount is None else {"refund_key": key, "amount": amount}
    assert http.post("/v2/ORDER-1/refund", json=params, headers=AUTH).json["status_code"] == "200"


@pytest.mark.parametrize(
    ("steps", "transaction_status", "fraud_status", "code"),
    [
        ([("pay", "bca_va", "pending")], "pending", "accept", "201"),
        ([("pay", "gopay", "settlement")], "settlement", "accept", "200"),
        ([("pay", "credit_card", "capture")], "capture", "accept", "200"),
        ([("pay", "credit_card", "challenge")], "capture", "challenge", "201"),
        ([("pay", "credit_card", "deny")], "deny", "deny", "202"),
        ([("pay", "gopay", "deny")], "deny", "accept", "202"),
        ([("pay", "bca_va", "pending"), ("core", "cancel")], "cancel", "accept", "202"),
        ([("pay", "gopay", "failure")], "failure", "accept", "202"),
        ([("pay", "bca_va", "expire")], "expire", "accept", "407"),
        ([("pay", "bca_va", "pending"), ("core", "expire")], "expire", "accept", "407"),
        ([("pay", "gopay", "settlement"), ("refund", 4000)], "partial_refund", "accept", "200"),
        ([("pay", "gopay", "settlement"), ("refund", None)], "refund", "accept", "200"),
    ],
)
def test_status_reports_midtrans_status_code_for_every_state_signed_over_what_it_carries(
    http, steps, transaction_status, fraud_status, code
):
    create(http, amount=10000)
    for step in steps:
        if step[0] == "pay":
            pay(http, "ORDER-1", step[1], step[2])
        elif step[0] == "core":
            http.post(f"/v2/ORDER-1/{step[1]}", json={}, headers=AUTH)
        else:
            refund(http, step[1])

    body = status(http, "ORDER-1")

    assert (body["status_code"], body["transaction_status"], body["fraud_status"]) == (
        code,
        transaction_status,
        fraud_status,
    )
    assert body["signature_key"] == expected_signature(
        body["order_id"], body["status_code"], body["gross_amount"]
    )


def test_status_signature_covers_the_gross_amount_including_a_customer_fee(http):
    create(http, amount=10000)
    http.post(
        "/control/transactions/ORDER-1/pay",
        json={"method": "other_qris", "outcome": "settlement", "customer_fee": 70},
    )

    body = status(http, "ORDER-1")

    assert body["gross_amount"] == "10070.00"
    assert body["signature_key"] == expected_signature("ORDER-1", "200", "10070.00")


def test_status_after_refunds_lists_each_and_sums_them_in_refund_amount(http):
    create(http)
    pay(http, "ORDER-1", "gopay", "settlement")
    refund(http, 1000, key="first")
    refund(http, 2500, key="second")

    body = status(http, "ORDER-1")

    assert (body["status_code"], body["transaction_status"]) == ("200", "partial_refund")
    assert body["refund_amount"] == "3500.00"
    assert [(r["refund_key"], r["refund_amount"]) for r in body["refunds"]] == [
        ("first", "1000.00"),
        ("second", "2500.00"),
    ]
    assert all(isinstance(r["refund_chargeback_id"], int) for r in body["refunds"])


def test_status_of_an_unrefunded_transaction_carries_no_refund_fields(http):
    create(http)
    pay(http, "ORDER-1", "gopay", "settlement")

    body = status(http, "ORDER-1")

    assert "refund_amount" not in body
    assert "refunds" not in body


# --- Control API -------------------------------------------------------------------------------


def test_control_pay_of_an_unknown_order_is_404(http):
    response = http.post(
        "/control/transactions/NOPE/pay", json={"method": "gopay", "outcome": "settlement"}
    )

    assert response.status_code == 404


@pytest.mark.parametrize(
    "params",
    [
        {"method": "cash", "outcome": "settlement"},
        {"method": "gopay", "outcome": "paid"},
        {"method": 1},
    ],
)
def test_control_pay_with_an_unknown_method_or_outcome_is_400(http, params):
    create(http)

    assert http.post("/control/transactions/ORDER-1/pay", json=params).status_code == 400


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (("gopay", "cancel"), ("gopay", "settlement")),
        (("gopay", "settlement"), ("gopay", "settlement")),
        (None, ("bca_va", "challenge")),
    ],
)
def test_control_pay_refuses_illegal_moves_with_409(http, first, then):
    create(http)
    if first:
        pay(http, "ORDER-1", *first)

    response = http.post(
        "/control/transactions/ORDER-1/pay", json={"method": then[0], "outcome": then[1]}
    )

    assert response.status_code == 409
    assert response.json["error"]


def test_control_pay_only_offers_enabled_methods(http):
    create(http, enabled_payments=["bank_transfer"])

    refused = http.post(
        "/control/transactions/ORDER-1/pay", json={"method": "gopay", "outcome": "settlement"}
    )

    assert refused.status_code == 409
    assert pay(http, "ORDER-1", "bri_va", "settlement")["transaction_status"] == "settlement"


def test_control_transition_moves_a_pending_payment_to_settlement(http):
    create(http)
    pay(http, "ORDER-1", "echannel", "pending")

    response = http.post(
        "/control/transactions/ORDER-1/transition", json={"transaction_status": "settlement"}
    )

    assert response.status_code == 200
    assert (response.json["transaction_status"], response.json["status_code"]) == (
        "settlement",
        "200",
    )


@pytest.mark.parametrize(
    ("paid_with", "target"),
    [
        (None, "settlement"),
        (("gopay", "settlement"), "pending"),
        (("bca_va", "settlement"), "deny"),
    ],
)
def test_control_transition_refuses_moves_midtrans_never_makes(http, paid_with, target):
    create(http)
    if paid_with:
        pay(http, "ORDER-1", *paid_with)

    response = http.post(
        "/control/transactions/ORDER-1/transition", json={"transaction_status": target}
    )

    assert response.status_code == 409


def test_control_transition_can_reverse_a_permata_settlement_to_deny(http):
    create(http)
    pay(http, "ORDER-1", "permata_va", "settlement")

    response = http.post(
        "/control/transactions/ORDER-1/transition", json={"transaction_status": "deny"}
    )

    assert response.json["transaction_status"] == "deny"


def test_control_transition_refunds_partly_then_fully(http):
    create(http)
    pay(http, "ORDER-1", "dana", "settlement")

    partial = http.post(
        "/control/transactions/ORDER-1/transition",
        json={"transaction_status": "partial_refund", "amount": 2500},
    ).json
    full = http.post(
        "/control/transactions/ORDER-1/transition", json={"transaction_status": "refund"}
    ).json

    assert (partial["transaction_status"], partial["refund_amount"]) == (
        "partial_refund",
        "2500.00",
    )
    assert (full["transaction_status"], full["refund_amount"]) == ("refund", "10000.00")


def test_control_shows_internal_state_with_token_request_and_refunds(http):
    token = create(http, customer_details={"first_name": "Sari"})["token"]
    pay(http, "ORDER-1", "gopay", "settlement")
    http.post("/v2/ORDER-1/refund", json={"refund_key": "k", "amount": 100}, headers=AUTH)

    state = http.get("/control/transactions/ORDER-1").json

    assert state["token"] == token
    assert state["request"]["customer_details"] == {"first_name": "Sari"}
    assert state["payment_method"] == "gopay"
    assert [(r["refund_key"], r["amount"]) for r in state["refunds"]] == [("k", 100)]
    assert http.get("/control/transactions/NOPE").status_code == 404


def test_control_lists_transactions_newest_first(http):
    create(http, order_id="FIRST")
    create(http, order_id="SECOND")

    assert [t["order_id"] for t in http.get("/control/transactions").json] == ["SECOND", "FIRST"]


def test_control_notification_is_the_signed_notification_of_the_current_state(http):
    create(http, amount=25000)
    pay(http, "ORDER-1", "bca_va", "pending")
    pending = http.get("/control/transactions/ORDER-1/notification").json
    pay(http, "ORDER-1", "bca_va", "settlement")

    settled = http.get("/control/transactions/ORDER-1/notification").json

    assert (pending["status_code"], pending["transaction_status"]) == ("201", "pending")
    assert (settled["status_code"], settled["transaction_status"]) == ("200", "settlement")
    assert settled["status_message"] == "midtrans payment notification"
    assert settled["transaction_id"] == pending["transaction_id"]
    assert settled["va_numbers"] == pending["va_numbers"]
    assert settled["signature_key"] == expected_signature("ORDER-1", "200", "25000.00")


def test_control_notification_of_an_expiry_says_202_where_status_says_407(http):
    create(http)
    pay(http, "ORDER-1", "gopay", "expire")

    notification = http.get("/control/transactions/ORDER-1/notification").json

    assert (notification["status_code"], notification["transaction_status"]) == ("202", "expire")
    assert notification["signature_key"] == expected_signature("ORDER-1", "202", "10000.00")
    assert status(http, "ORDER-1")["status_code"] == "407"


def test_control_notification_of_an_unknown_or_unpaid_order_is_refused(http):
    create(http)

    unknown = http.get("/control/transactions/NOPE/notification")
    unpaid = http.get("/control/transactions/ORDER-1/notification")

    assert (unknown.status_code, unpaid.status_code) == (404, 409)
    assert unknown.json["error"] and unpaid.json["error"]


def test_control_notification_is_not_a_core_call_and_sends_nothing(http):
    create(http)
    pay(http, "ORDER-1", "gopay", "settlement")
    queued = len(http.get("/control/notifications?order_id=ORDER-1").json)

    http.get("/control/transactions/ORDER-1/notification")

    assert len(http.get("/control/notifications?order_id=ORDER-1").json) == queued
    assert http.get("/control/calls?operation=core.status").json["total"] == 0


# --- Faults ------------------------------------------------------------------------------------


def test_fault_answers_snap_and_core_with_its_status_and_body_but_spares_control(http):
    create(http)
    http.post(
        "/control/faults", json={"status": 502, "body": "<html><h1>502 Bad Gateway</h1></html>"}
    )

    snap = http.post("/snap/v1/transactions", json={}, headers=AUTH)
    core = http.get("/v2/ORDER-1/status", headers=AUTH)

    assert (snap.status_code, snap.mimetype, snap.text) == (
        502,
        "text/html",
        "<html><h1>502 Bad Gateway</h1></html>",
    )
    assert core.status_code == 502
    assert http.get("/control/transactions/ORDER-1").status_code == 200


def test_fault_without_body_answers_with_midtrans_internal_error_bodies(http):
    http.post("/control/faults", json={"status": 500})

    snap = http.post("/snap/v1/transactions", json={}, headers=AUTH)
    core = http.get("/v2/ORDER-1/status", headers=AUTH)

    message = "Sorry, we encountered internal server error. We will fix this soon."
    assert (snap.status_code, snap.json) == (500, {"error_messages": [message]})
    assert (core.status_code, core.json) == (500, {"status_code": "500", "status_message": message})


def test_fault_with_times_stops_after_that_many_requests(http):
    http.post("/control/faults", json={"status": 503, "times": 2})

    codes = [http.get("/v2/X/status", headers=AUTH).status_code for _ in range(3)]

    assert codes == [503, 503, 200]
    assert http.get("/control/faults").json == {"fault": None}


def test_fault_delay_slows_answers_that_otherwise_succeed(http):
    http.post("/control/faults", json={"delay_seconds": 0.3})

    started = time.monotonic()
    create(http)

    assert time.monotonic() - started >= 0.3


def test_clearing_faults_restores_normal_answers(http):
    http.post("/control/faults", json={"status": 500})

    assert http.delete("/control/faults").status_code == 204
    assert http.get("/v2/X/status", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"delay_seconds": -1},
        {"status": 42},
        {"times": 0},
        {"body": 5},
        {"status": 500, "colour": "red"},
        {"status": 500, "operations": []},
        {"status": 500, "operations": "core.status"},
        {"status": 500, "operations": ["core.status", 7]},
        {"status": 500, "operations": ["core.stat"]},
    ],
)
def test_invalid_fault_is_rejected(http, params):
    assert http.post("/control/faults", json=params).status_code == 400


def test_faults_and_transactions_are_shared_through_the_state_file(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    worker_a = create_app(server_key=SERVER_KEY, state_path=path).test_client()
    worker_b = create_app(server_key=SERVER_KEY, state_path=path).test_client()
    create(worker_a)

    worker_a.post("/control/faults", json={"status": 503, "times": 1})

    assert worker_b.get("/v2/ORDER-1/status", headers=AUTH).status_code == 503
    assert worker_a.get("/v2/ORDER-1/status", headers=AUTH).status_code == 200
    assert worker_b.post(
        "/snap/v1/transactions",
        json={"transaction_details": {"order_id": "ORDER-1", "gross_amount": 1}},
        headers=AUTH,
    ).json == {"error_messages": ["transaction_details.order_id has already been taken"]}


def test_fault_aimed_at_an_operation_spares_the_others_and_only_they_use_up_times(http):
    create(http)
    pay(http, "ORDER-1", "bca_va", "pending")
    http.post("/control/faults", json={"status": 503, "times": 2, "operations": ["core.status"]})

    spared = [
        http.post("/snap/v1/transactions", json={}, headers=AUTH).status_code,
        http.post("/v2/ORDER-1/approve", json={}, headers=AUTH).status_code,
    ]
    codes = [http.get("/v2/ORDER-1/status", headers=AUTH).status_code for _ in range(3)]

    assert spared == [400, 200]
    assert codes == [503, 503, 200]
    assert http.get("/control/faults").json == {"fault": None}


def test_fault_aimed_at_several_operations_hits_each_of_them(http):
    create(http)
    pay(http, "ORDER-1", "gopay", "settlement")
    http.post("/control/faults", json={"status": 500, "operations": ["core.refund", "snap.create"]})

    hit = [
        http.post("/v2/ORDER-1/refund", json={}, headers=AUTH).status_code,
        http.post("/snap/v1/transactions", json={}, headers=AUTH).status_code,
    ]

    assert hit == [500, 500]
    assert http.get("/v2/ORDER-1/status", headers=AUTH).status_code == 200


def test_fault_delay_aimed_at_status_waits_for_a_status_call(http):
    http.post(
        "/control/faults",
        json={"delay_seconds": 0.3, "times": 1, "operations": ["core.status"]},
    )
    create(http)
    waiting = http.get("/control/faults").json["fault"]

    started = time.monotonic()
    http.get("/v2/ORDER-1/status", headers=AUTH)

    assert time.monotonic() - started >= 0.3
    assert waiting["times"] == 1
    assert http.get("/control/faults").json == {"fault": None}


def test_fault_is_shown_with_the_operations_it_is_aimed_at(http):
    aimed = http.post("/control/faults", json={"status": 503, "operations": ["core.status"]}).json
    shown = http.get("/control/faults").json
    http.post("/control/faults", json={"status": 503})

    assert aimed == shown
    assert shown["fault"] == {
        "delay_seconds": 0.0,
        "status": 503,
        "body": None,
        "times": None,
        "operations": ["core.status"],
    }
    assert http.get("/control/faults").json["fault"]["operations"] is None


def test_state_file_of_an_older_simulator_opens_and_keeps_its_fault(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE transactions (order_id TEXT PRIMARY KEY, transaction_id TEXT NOT NULL
                UNIQUE, token TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, state TEXT NOT NULL);
            CREATE TABLE fault (id INTEGER PRIMARY KEY CHECK (id = 1), delay_seconds REAL NOT NULL,
                status INTEGER, body TEXT, times INTEGER);
            INSERT INTO fault VALUES (1, 0, 503, NULL, 1);
            """
        )
    conn.close()

    upgraded = create_app(server_key=SERVER_KEY, state_path=str(path)).test_client()
    again = create_app(server_key=SERVER_KEY, state_path=str(path)).test_client()

    assert upgraded.get("/v2/X/status", headers=AUTH).status_code == 503
    again.post("/control/faults", json={"status": 502, "operations": ["snap.create"]})
    assert upgraded.post("/snap/v1/transactions", json={}, headers=AUTH).status_code == 502
    assert upgraded.get("/control/calls").json["total"] == 2


# --- Call counts -------------------------------------------------------------------------------


def calls(http, **filters: str) -> dict:
    response = http.get("/control/calls", query_string=filters)
    assert response.status_code == 200
    return response.json


def test_every_snap_and_core_operation_is_counted_under_the_id_in_its_path(http):
    token = create(http)["token"]
    http.get(f"/snap/v4/redirection/{token}")
    pay(http, "ORDER-1", "credit_card", "challenge")
    transaction_id = status(http, "ORDER-1")["transaction_id"]
    status(http, transaction_id)
    http.post("/v2/ORDER-1/approve", json={}, headers=AUTH)
    http.post("/v2/ORDER-1/deny", json={}, headers=AUTH)
    http.post("/v2/ORDER-1/cancel", json={}, headers=AUTH)
    http.post("/v2/ORDER-1/expire", json={}, headers=AUTH)
    http.post("/v2/ORDER-1/refund", json={}, headers=AUTH)
    http.post("/v2/ORDER-1/refund/online/direct", json={}, headers=AUTH)
    http.post(f"/snap/v1/transactions/{token}/cancel", headers=AUTH)

    expected = [
        ("core.approve", "ORDER-1"),
        ("core.cancel", "ORDER-1"),
        ("core.deny", "ORDER-1"),
        ("core.expire", "ORDER-1"),
        ("core.refund", "ORDER-1"),
        ("core.refund_direct", "ORDER-1"),
        ("core.status", "ORDER-1"),
        ("core.status", transaction_id),
        ("snap.cancel", token),
        ("snap.checkout", token),
        ("snap.create", "ORDER-1"),
    ]
    assert calls(http) == {
        "calls": [{"operation": o, "key": k, "count": 1} for o, k in sorted(expected)],
        "total": 11,
    }


def test_repeated_calls_add_up_on_one_row(http):
    for _ in range(10):
        status(http, "ORDER-1")

    assert calls(http)["calls"] == [{"operation": "core.status", "key": "ORDER-1", "count": 10}]


def test_calls_answered_by_a_fault_a_wrong_key_or_an_unknown_id_are_counted(http):
    http.post("/control/faults", json={"status": 503, "times": 1})
    http.get("/v2/ORDER-1/status", headers=AUTH)
    http.get("/v2/ORDER-1/status", headers=basic_auth("SB-Mid-server-WRONG"))
    http.get("/v2/ORDER-1/status", headers=AUTH)
    http.post("/snap/v1/transactions", json={}, headers={})
    http.post("/snap/v1/transactions/no-such-token/cancel", headers=AUTH)

    assert calls(http)["calls"] == [
        {"operation": "core.status", "key": "ORDER-1", "count": 3},
        {"operation": "snap.cancel", "key": "no-such-token", "count": 1},
        {"operation": "snap.create", "key": "", "count": 1},
    ]


def test_control_routes_and_unknown_paths_are_not_counted(http):
    create(http)
    pay(http, "ORDER-1", "gopay", "settlement")
    http.get("/control/transactions/ORDER-1")
    http.post("/control/transactions/ORDER-1/notify")
    http.get("/v2/ORDER-1/nonsense", headers=AUTH)
    http.get("/snap.js")

    assert calls(http)["calls"] == [{"operation": "snap.create", "key": "ORDER-1", "count": 1}]


def test_calls_can_be_filtered_by_operation_and_key_with_the_total_of_what_is_shown(http):
    create(http)
    create(http, order_id="ORDER-2")
    for key in ("ORDER-1", "ORDER-1", "ORDER-2"):
        status(http, key)

    by_operation = calls(http, operation="core.status")
    by_key = calls(http, key="ORDER-1")
    by_both = calls(http, operation="core.status", key="ORDER-2")
    nothing = calls(http, operation="core.refund")

    assert [(c["key"], c["count"]) for c in by_operation["calls"]] == [
        ("ORDER-1", 2),
        ("ORDER-2", 1),
    ]
    assert by_operation["total"] == 3
    assert [(c["operation"], c["count"]) for c in by_key["calls"]] == [
        ("core.status", 2),
        ("snap.create", 1),
    ]
    assert by_key["total"] == 3
    assert by_both["total"] == 1
    assert nothing == {"calls": [], "total": 0}


def test_resetting_calls_counts_from_zero_again(http):
    status(http, "ORDER-1")

    assert http.delete("/control/calls").status_code == 204
    assert calls(http) == {"calls": [], "total": 0}
    status(http, "ORDER-1")
    assert calls(http)["total"] == 1


def test_calls_are_counted_across_apps_sharing_the_state_file(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    worker_a = create_app(server_key=SERVER_KEY, state_path=path).test_client()
    worker_b = create_app(server_key=SERVER_KEY, state_path=path).test_client()

    worker_a.get("/v2/ORDER-1/status", headers=AUTH)
    worker_b.get("/v2/ORDER-1/status", headers=AUTH)

    assert calls(worker_a)["total"] == 2
    worker_b.delete("/control/calls")
    assert calls(worker_a)["total"] == 0


def test_session_simulator_helpers_count_calls_aim_faults_and_show_notifications(
    midtrans_simulator, order_id
):
    base = midtrans_simulator.url
    body = {"transaction_details": {"order_id": order_id, "gross_amount": 5000}}
    requests.post(f"{base}/snap/v1/transactions", json=body, headers=AUTH_SESSION, timeout=10)
    midtrans_simulator.pay(order_id, "gopay", "settlement")
    midtrans_simulator.fault(status=503, times=1, operations=["core.status"])

    faulted = requests.get(f"{base}/v2/{order_id}/status", headers=AUTH_SESSION, timeout=10)
    answered = requests.get(f"{base}/v2/{order_id}/status", headers=AUTH_SESSION, timeout=10)

    assert (faulted.status_code, answered.json()["status_code"]) == (503, "200")
    assert midtrans_simulator.calls("core.status", order_id) == 2
    assert midtrans_simulator.calls(key=order_id) == 3
    assert midtrans_simulator.calls() == 3
    assert (
        midtrans_simulator.notification(order_id)["signature_key"]
        == (answered.json()["signature_key"])
    )
    midtrans_simulator.reset_calls()
    assert midtrans_simulator.calls() == 0


# --- Payment page ------------------------------------------------------------------------------


def test_payment_page_shows_the_order_and_escapes_what_it_shows(http):
    redirect_url = create(
        http,
        amount=150000,
        item_details=[{"price": 150000, "quantity": 1, "name": "<script>alert(1)</script>"}],
    )["redirect_url"]

    page = http.get(redirect_url).text

    assert "ORDER-1" in page
    assert "Rp 150.000" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page


def test_payment_page_form_pays_and_shows_the_result(http):
    token = create(http)["token"]
    url = f"/snap/v4/redirection/{token}"

    submitted = http.post(url, data={"method": "bca_va", "outcome": "settlement"})
    page = http.get(url).text

    assert submitted.status_code == 303
    assert "settlement (status_code 200)" in page
    assert "BCA VA number" in page
    assert status(http, "ORDER-1")["transaction_status"] == "settlement"


def test_payment_page_offers_only_enabled_methods(http):
    token = create(http, enabled_payments=["cstore"])["token"]

    page = http.get(f"/snap/v4/redirection/{token}").text

    assert re.findall(r'<option value="([a-z_]+_?[a-z]*)"', page)[:2] == ["indomaret", "alfamart"]
    assert 'value="gopay"' not in page
    assert (
        http.post(
            f"/snap/v4/redirection/{token}", data={"method": "gopay", "outcome": "settlement"}
        ).status_code
        == 409
    )


def test_payment_page_links_back_to_the_finish_url_with_the_result(http):
    token = create(http, callbacks={"finish": "https://shop.example/done?lang=id"})["token"]
    http.post(f"/snap/v4/redirection/{token}", data={"method": "gopay", "outcome": "settlement"})

    page = http.get(f"/snap/v4/redirection/{token}").text

    assert (
        'href="https://shop.example/done?lang=id&amp;order_id=ORDER-1&amp;status_code=200'
        '&amp;transaction_status=settlement"' in page
    )


def test_payment_page_of_an_unknown_token_is_404(http):
    assert http.get(f"/snap/v4/redirection/{uuid.uuid4()}").status_code == 404


# --- Real HTTP with the unmodified midtransclient ----------------------------------------------


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # A short poll interval keeps shutdown from waiting half a second per test.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def base_url(sim_app) -> Iterator[str]:
    with serving(sim_app) as base:
        yield base


def clients(
    base: str, server_key: str = SERVER_KEY
) -> tuple[midtransclient.Snap, midtransclient.CoreApi]:
    snap = midtransclient.Snap(
        is_production=False,
        server_key=server_key,
        client_key="SB-Mid-client-TEST",
        custom_headers={},
    )
    snap.api_config.SNAP_SANDBOX_BASE_URL = base + "/snap/v1"
    snap.api_config.CORE_SANDBOX_BASE_URL = base
    core = midtransclient.CoreApi(
        is_production=False,
        server_key=server_key,
        client_key="SB-Mid-client-TEST",
        custom_headers={},
    )
    core.api_config.CORE_SANDBOX_BASE_URL = base
    return snap, core


def control_pay(base: str, order_id: str, method: str, outcome: str) -> None:
    response = requests.post(
        f"{base}/control/transactions/{order_id}/pay",
        json={"method": method, "outcome": outcome},
        timeout=10,
    )
    response.raise_for_status()


def new_order(snap: midtransclient.Snap, order_id: str = "ORDER-1", amount: int = 10000) -> dict:
    return snap.create_transaction(
        {"transaction_details": {"order_id": order_id, "gross_amount": amount}}
    )


def test_midtransclient_creates_a_transaction_and_gets_a_redirect_url(base_url):
    snap, _ = clients(base_url)

    body = new_order(snap)

    assert body["redirect_url"] == f"{base_url}/snap/v4/redirection/{body['token']}"
    assert requests.get(body["redirect_url"], timeout=10).status_code == 200


def test_midtransclient_sees_a_duplicate_order_id_as_a_400_api_error(base_url):
    snap, _ = clients(base_url)
    new_order(snap)

    with pytest.raises(midtransclient.MidtransAPIError) as caught:
        new_order(snap)

    assert caught.value.http_status_code == 400
    assert caught.value.api_response_dict == {
        "error_messages": ["transaction_details.order_id has already been taken"]
    }


def test_midtransclient_with_a_wrong_key_gets_401_from_snap_and_core(base_url):
    snap, core = clients(base_url, server_key="SB-Mid-server-WRONG")

    with pytest.raises(midtransclient.MidtransAPIError) as from_snap:
        new_order(snap)
    with pytest.raises(midtransclient.MidtransAPIError) as from_core:
        core.transactions.status("ORDER-1")

    assert from_snap.value.http_status_code == 401
    assert from_snap.value.api_response_dict == UNAUTHORIZED_SNAP
    assert from_core.value.http_status_code == 401
    assert from_core.value.api_response_dict["status_message"] == "Unknown Merchant server_key/id"


def test_midtransclient_status_before_payment_raises_api_status_404_over_http_200(base_url):
    snap, core = clients(base_url)
    new_order(snap)

    with pytest.raises(midtransclient.MidtransAPIError) as caught:
        core.transactions.status("ORDER-1")

    assert "API status code: `404`" in caught.value.message
    assert caught.value.http_status_code == 200


def test_midtransclient_status_after_settlement_carries_the_right_signature(base_url):
    snap, core = clients(base_url)
    new_order(snap, amount=250000)
    control_pay(base_url, "ORDER-1", "bni_va", "settlement")

    body = snap.transactions.status("ORDER-1")

    assert body["transaction_status"] == "settlement"
    assert body["signature_key"] == expected_signature("ORDER-1", "200", "250000.00")
    assert core.transactions.status(body["transaction_id"]) == body


def test_midtransclient_cancel_round_trip(base_url):
    snap, core = clients(base_url)
    new_order(snap)
    control_pay(base_url, "ORDER-1", "bca_va", "pending")

    canceled = core.transactions.cancel("ORDER-1")
    with pytest.raises(midtransclient.MidtransAPIError) as again:
        core.transactions.cancel("ORDER-1")

    assert canceled["transaction_status"] == "cancel"
    assert core.transactions.status("ORDER-1")["status_code"] == "202"
    assert "API status code: `412`" in again.value.message


def test_midtransclient_expire_round_trip_returns_407_without_raising(base_url):
    snap, core = clients(base_url)
    new_order(snap)
    control_pay(base_url, "ORDER-1", "echannel", "pending")

    expired = core.transactions.expire("ORDER-1")

    assert (expired["status_code"], expired["transaction_status"]) == ("407", "expire")
    assert core.transactions.status("ORDER-1")["status_code"] == "407"


def test_midtransclient_refund_round_trip(base_url):
    snap, core = clients(base_url)
    new_order(snap)
    control_pay(base_url, "ORDER-1", "gopay", "settlement")

    partial = core.transactions.refund(
        "ORDER-1", {"refund_key": "rk-1", "amount": 4000, "reason": "seat change"}
    )
    replay = core.transactions.refund(
        "ORDER-1", {"refund_key": "rk-1", "amount": 4000, "reason": "seat change"}
    )
    rest = core.transactions.refundDirect("ORDER-1", {"refund_key": "rk-2"})
    with pytest.raises(midtransclient.MidtransAPIError) as over:
        core.transactions.refund("ORDER-1", {"refund_key": "rk-3", "amount": 1})

    assert partial == replay
    assert (partial["transaction_status"], rest["transaction_status"]) == (
        "partial_refund",
        "refund",
    )
    assert core.transactions.status("ORDER-1")["refund_amount"] == "10000.00"
    assert over.value.api_response_dict == CANNOT_MODIFY


def test_midtransclient_approves_a_challenged_card(base_url):
    snap, core = clients(base_url)
    new_order(snap)
    control_pay(base_url, "ORDER-1", "credit_card", "challenge")

    approved = core.transactions.approve("ORDER-1")

    assert (approved["transaction_status"], approved["fraud_status"]) == ("capture", "accept")


def test_midtransclient_fails_to_decode_an_html_gateway_error(base_url):
    snap, _ = clients(base_url)
    requests.post(
        f"{base_url}/control/faults",
        json={"status": 502, "body": "<html>Bad Gateway</html>"},
        timeout=10,
    )

    with pytest.raises(midtransclient.JSONDecodeError):
        new_order(snap)


def test_concurrent_token_requests_for_one_order_id_yield_exactly_one_token(base_url):
    snap, _ = clients(base_url)
    outcomes: list[str] = []

    def attempt() -> None:
        own_snap, _ = clients(base_url)
        try:
            new_order(own_snap, order_id="RACE-1")
            outcomes.append("token")
        except midtransclient.MidtransAPIError:
            outcomes.append("taken")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["taken"] * 7 + ["token"]


def test_concurrent_calls_from_many_threads_are_each_counted_once(base_url):
    per_thread, threads = 15, 8

    def call_status() -> None:
        with requests.Session() as session:
            for _ in range(per_thread):
                session.get(f"{base_url}/v2/ORDER-1/status", headers=AUTH, timeout=10)

    workers = [threading.Thread(target=call_status) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    counted = requests.get(f"{base_url}/control/calls", params={"key": "ORDER-1"}, timeout=10)
    assert counted.json()["total"] == per_thread * threads


def test_blueprint_mounted_under_a_prefix_on_another_app_serves_midtransclient(tmp_path):
    host = Flask("host_app")
    host.add_url_rule("/", "home", lambda: "host app")
    init_app(host, server_key=SERVER_KEY, state_path=str(tmp_path / "mounted" / "sim.sqlite3"))

    with serving(host) as base:
        snap, core = clients(base + "/_simulator")
        body = new_order(snap)
        control_pay(base + "/_simulator", "ORDER-1", "other_qris", "settlement")

        assert body["redirect_url"] == f"{base}/_simulator/snap/v4/redirection/{body['token']}"
        assert core.transactions.status("ORDER-1")["payment_type"] == "qris"
        assert requests.get(base + "/", timeout=10).text == "host app"


def actions(body: dict) -> dict[str, str]:
    return {action["name"]: action["url"] for action in body.get("actions", [])}


def test_a_pending_qris_payment_answers_with_its_qr_string_and_image_like_midtrans(http):
    create(http, amount=150_000)

    pay(http, "ORDER-1", "other_qris", "pending")
    body = status(http, "ORDER-1")

    # An EMVCo merchant-presented payload: format 01, dynamic, IDR, the amount, a CRC at the end.
    qr = body["qr_string"]
    assert qr.startswith("000201010212") and "5303360" in qr and "5406150000" in qr
    assert re.fullmatch(r".*6304[0-9A-F]{4}", qr)
    url = actions(body)["generate-qr-code"]
    assert url == f"http://localhost/v2/qris/{body['transaction_id']}/qr-code"
    # Midtrans serves the QR image to anyone holding the link, without the server key.
    image = http.get(url)
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert image.data.startswith(b"\x89PNG")


def test_a_pending_gopay_payment_offers_a_qr_image_and_a_deeplink(http):
    token = create(http)["token"]
    body = pay(http, "ORDER-1", "gopay", "pending")

    links = actions(status(http, "ORDER-1"))

    assert set(links) == {"generate-qr-code", "deeplink-redirect", "get-status", "cancel"}
    assert http.get(links["generate-qr-code"]).mimetype == "image/png"
    # The deeplink opens the simulator's payment page, where a tester pays as in the app.
    assert links["deeplink-redirect"] == f"http://localhost/snap/v4/redirection/{token}"
    assert "qr_string" not in body


def test_a_pending_shopeepay_payment_offers_only_its_deeplink(http):
    create(http)
    pay(http, "ORDER-1", "shopeepay", "pending")
    assert set(actions(status(http, "ORDER-1"))) == {"deeplink-redirect"}


def test_a_settled_wallet_payment_lists_no_actions_and_a_card_has_no_qr_image(http):
    create(http)
    pay(http, "ORDER-1", "gopay", "pending")
    url = actions(status(http, "ORDER-1"))["generate-qr-code"]
    assert http.get(url).status_code == 200
    http.post("/control/transactions/ORDER-1/transition", json={"transaction_status": "settlement"})
    assert "actions" not in status(http, "ORDER-1")
    card = create(http, "ORDER-2")
    assert card and pay(http, "ORDER-2", "credit_card", "capture")
    card_id = status(http, "ORDER-2")["transaction_id"]
    assert http.get(f"/v2/qris/{card_id}/qr-code").status_code == 404
    assert http.get(f"/v2/gopay/{uuid.uuid4()}/qr-code").status_code == 404
