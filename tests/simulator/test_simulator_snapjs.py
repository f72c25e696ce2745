"""The simulator's Snap.js stand-in: the script, its popup and the charge call behind it."""

import base64
import json
import re

import pytest
from flask import Flask

from midtrans_simulator import create_app

SERVER_KEY = "SB-Mid-server-TEST"
CLIENT_KEY = "SB-Mid-client-TEST"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{SERVER_KEY}:".encode()).decode()}
MERCHANT = "http://shop.test:8003"


@pytest.fixture
def http(tmp_path):
    app: Flask = create_app(server_key=SERVER_KEY, state_path=str(tmp_path / "sim.sqlite3"))
    return app.test_client()


def create(http, order_id: str = "ORD-SNAPJS-1", **extra) -> str:
    body = {"transaction_details": {"order_id": order_id, "gross_amount": 150_000}, **extra}
    response = http.post("/snap/v1/transactions", json=body, headers=AUTH)
    assert response.status_code == 201
    return response.json["token"]


def popup(http, token: str, **params):
    query = {"client_key": CLIENT_KEY, "origin": MERCHANT, "language": "en", **params}
    return http.get(f"/snap/popup/{token}", query_string=query)


def charge(http, token: str, method: str, outcome: str):
    return http.post(
        f"/snap/v2/transactions/{token}/charge", json={"method": method, "outcome": outcome}
    )


def test_the_script_is_served_as_javascript_and_defines_window_snap(http):
    with http.get("/snap/snap.js") as response:
        assert response.status_code == 200 and response.mimetype == "text/javascript"
        script = response.get_data(as_text=True)
    assert "window.snap = {" in script and "data-client-key" in script


def test_a_pending_va_charge_answers_like_snap_with_the_va_number(http):
    finish = "http://shop.test:8003/checkout/42/finish"
    token = create(http, callbacks={"finish": finish, "error": finish})

    result = charge(http, token, "bca_va", "pending").json

    assert result["status_code"] == "201" and result["transaction_status"] == "pending"
    assert result["payment_type"] == "bank_transfer" and result["order_id"] == "ORD-SNAPJS-1"
    assert re.fullmatch(r"\d{11}", result["va_numbers"][0]["va_number"])
    assert result["gross_amount"] == "150000.00"
    assert "signature_key" not in result
    assert result["finish_redirect_url"] == (
        f"{finish}?order_id=ORD-SNAPJS-1&status_code=201&transaction_status=pending"
    )


@pytest.mark.parametrize(
    ("method", "outcome", "code", "fields"),
    [
        ("echannel", "pending", "201", {"bill_key", "biller_code"}),
        ("alfamart", "pending", "201", {"store", "payment_code"}),
        ("gopay", "settlement", "200", set()),
        ("credit_card", "capture", "200", {"masked_card", "approval_code"}),
        ("credit_card", "deny", "202", {"masked_card"}),
    ],
)
def test_each_method_answers_with_its_own_fields(http, method, outcome, code, fields):
    result = charge(http, create(http), method, outcome).json
    assert result["status_code"] == code and fields <= set(result)


def test_a_pending_qris_charge_hands_the_popup_its_qr_like_snap(http):
    result = charge(http, create(http), "other_qris", "pending").json
    (action,) = result["actions"]
    assert action["name"] == "generate-qr-code" and action["url"].endswith("/qr-code")
    assert result["qr_string"].startswith("000201")
    page = popup(http, create(http, "ORD-SNAPJS-2")).get_data(as_text=True)
    assert "qr_alt" in page


def test_a_charge_queues_the_notification_midtrans_would_send(http):
    charge(http, create(http), "bni_va", "pending")
    deliveries = http.get("/control/notifications?order_id=ORD-SNAPJS-1").json
    assert [d["body"]["transaction_status"] for d in deliveries] == ["pending"]


def test_refused_charges_answer_with_snaps_error_shape(http):
    token = create(http, enabled_payments=["bca_va"])
    assert charge(http, token, "gopay", "settlement").json == {
        "status_code": "406",
        "status_message": ["gopay is not enabled for this transaction"],
    }
    assert charge(http, token, "bca_va", "capture").status_code == 409
    assert charge(http, token, "cash", "settlement").status_code == 400
    assert charge(http, "no-such-token", "bca_va", "pending").status_code == 404


def test_the_popup_offers_the_enabled_methods_and_posts_only_to_the_merchant(http):
    page = popup(http, create(http, enabled_payments=["bank_transfer"])).get_data(as_text=True)
    assert 'value="bca_va"' in page and 'value="credit_card"' not in page
    assert f'data-parent-origin="{MERCHANT}"' in page
    assert "Rp 150.000" in page and '<html lang="en">' in page


@pytest.mark.parametrize("origin", ["", "*", "javascript:alert(1)", "http://shop.test/path"])
def test_the_popup_refuses_an_origin_it_cannot_post_to_safely(http, origin):
    assert popup(http, create(http), origin=origin).status_code == 400


@pytest.mark.parametrize("client_key", ["", SERVER_KEY, "Mid-server-PRODUCTION"])
def test_the_popup_refuses_a_missing_client_key_or_a_server_key(http, client_key):
    page = popup(http, create(http), client_key=client_key).get_data(as_text=True)
    assert 'role="alert"' in page and 'id="pay-form"' not in page


def test_a_reopened_popup_shows_the_pending_instructions_again(http):
    token = create(http)
    va = charge(http, token, "permata_va", "pending").json["permata_va_number"]
    page = popup(http, token).get_data(as_text=True)
    result = json.loads(re.search(r"data-result='([^']+)'", page).group(1))
    assert result["permata_va_number"] == va and "signature_key" not in result


def test_a_paid_token_cannot_be_paid_again_in_the_popup(http):
    token = create(http)
    charge(http, token, "gopay", "settlement")
    page = popup(http, token).get_data(as_text=True)
    assert "can no longer be paid" in page and 'id="pay-form"' not in page
