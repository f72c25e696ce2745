"""The JSON API under /payments, on PostgreSQL, with Midtrans simulated over HTTP."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.support.api import create, stored, transaction_service_payload
from tests.support.config import SERVER_KEY
from tiketq.extensions import db
from tiketq.gateway import EXTENSION_KEY
from tiketq.gateway.midtrans import MidtransGateway
from tiketq.payments.models import PaymentEvent, utcnow
from tiketq.payments.status import PaymentStatus


def use_gateway(app, monkeypatch, **overrides):
    settings = {
        "server_key": SERVER_KEY,
        "client_key": "SB-Mid-client-TESTKEY",
        "is_production": False,
        "base_url": app.config["MIDTRANS_BASE_URL"],
        "timeout": (1.0, 1.0),
        **overrides,
    }
    monkeypatch.setitem(app.extensions, EXTENSION_KEY, MidtransGateway(**settings))


def test_create_answers_201_with_the_fields_callers_read(client, order_id, midtrans_simulator):
    response = create(client, transaction_service_payload(order_id))

    assert response.status_code == 201
    body = response.get_json()
    assert body["transaction_id"] == body["order_id"] == order_id
    assert body["gateway_order_id"] == order_id
    assert body["amount"] == 1_275_000 and isinstance(body["amount"], int)
    assert body["currency"] == "IDR"
    assert body["status"] == "pending" and body["status_detail"] is None
    assert body["payment_method"] == "bank_transfer"
    assert body["snap_token"]
    assert body["payment_url"] == f"http://localhost/checkout/{body['id']}"
    assert body["snap_redirect_url"].endswith(f"/snap/v4/redirection/{body['snap_token']}")
    assert body["metadata"] == {
        "token": body["snap_token"],
        "expiry_time": body["expires_at"],
        "expiry_duration": 1,
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_midtrans_receives_integer_items_that_add_up(client, order_id, midtrans_simulator):
    create(client, transaction_service_payload(order_id, total=1_250_000.0))

    sent = midtrans_simulator.transaction(order_id)["request"]
    assert sent["transaction_details"] == {"order_id": order_id, "gross_amount": 1_250_000}
    assert [(i["id"], i["price"], i["quantity"]) for i in sent["item_details"]] == [
        (order_id, 1_200_000, 1),
        (f"{order_id}-2", 50_000, 2),
        (f"{order_id}-3", -50_000, 1),
    ]
    assert sent["enabled_payments"] == ["bca_va", "bni_va", "bri_va", "echannel", "permata_va"]
    assert sent["customer_details"] == {"email": "sari@example.co.id"}
    assert sent["expiry"]["unit"] == "minute" and sent["expiry"]["duration"] == 60


def test_a_zero_tax_and_discount_line_is_dropped(client, order_id, midtrans_simulator):
    assert (
        create(client, transaction_service_payload(order_id, total=1_300_000.0)).status_code == 201
    )
    names = [i["name"] for i in midtrans_simulator.transaction(order_id)["request"]["item_details"]]
    assert "Tax and discount" not in names


@pytest.mark.parametrize("path", ["/payments", "/payments/"])
def test_both_paths_create_without_a_redirect(client, order_id, path):
    response = client.post(path, json={"order_id": order_id, "amount": 150_000})
    assert response.status_code == 201


def test_omitted_method_offers_every_method(client, order_id, midtrans_simulator):
    create(client, {"order_id": order_id, "amount": 150_000})
    assert "enabled_payments" not in midtrans_simulator.transaction(order_id)["request"]


def test_a_payment_can_be_read_back_every_way(client, order_id):
    created = create(client, transaction_service_payload(order_id)).get_json()

    assert client.get(f"/payments/{created['id']}").get_json() == created
    assert client.get(f"/payments/payment-{order_id}").get_json() == created
    assert client.get(f"/payments/order/{order_id}").get_json() == [created]
    status = client.get(f"/payments/{created['id']}/status").get_json()
    assert status["payment_id"] == created["id"] and status["order_id"] == order_id
    assert status["current_status"] == status["status"] == "pending"
    assert status["amount"] == 1_275_000 and status["auto_updated"] is True
    again = client.get(f"/payments/{created['id']}/status").get_json()
    assert again["auto_updated"] is False, "Midtrans is asked at most once per few seconds"


def test_a_retried_create_returns_the_same_payment_without_calling_midtrans_again(
    client, order_id, midtrans_simulator
):
    first = create(client, transaction_service_payload(order_id))
    token = midtrans_simulator.transaction(order_id)["token"]
    second = create(client, transaction_service_payload(order_id))

    assert second.status_code == 201 and second.get_json() == first.get_json()
    assert midtrans_simulator.transaction(order_id)["token"] == token
    attempts = client.get(f"/payments/order/{order_id}").get_json()
    assert len(attempts) == 1


def test_same_order_with_a_different_amount_conflicts(client, order_id):
    create(client, {"order_id": order_id, "amount": 150_000})
    response = create(client, {"order_id": order_id, "amount": 175_000})
    assert response.status_code == 409
    assert "150000" in response.get_json()["detail"]


def test_a_paid_order_cannot_be_paid_again(client, order_id):
    created = create(client, {"order_id": order_id, "amount": 150_000}).get_json()
    payment = stored(created["id"])
    payment.transition_to(PaymentStatus.SUCCESS, source="test")
    db.session.commit()

    response = create(client, {"order_id": order_id, "amount": 150_000})
    assert response.status_code == 409 and "already paid" in response.get_json()["detail"]


def test_an_expired_attempt_makes_way_for_a_fresh_gateway_order_id(
    client, order_id, midtrans_simulator
):
    first = create(client, {"order_id": order_id, "amount": 150_000}).get_json()
    payment = stored(first["id"])
    payment.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()

    second = create(client, {"order_id": order_id, "amount": 150_000}).get_json()

    assert second["id"] != first["id"]
    assert second["gateway_order_id"] == f"{order_id}~2"
    assert midtrans_simulator.transaction(f"{order_id}~2")["token"] == second["snap_token"]
    assert client.get(f"/payments/{first['id']}").get_json()["status"] == "expired"
    assert client.get(f"/payments/payment-{order_id}").get_json()["id"] == second["id"]


def test_idempotency_key_replays_the_first_answer(client, order_id):
    body = {"order_id": order_id, "amount": 99_000}
    first = create(client, body, **{"Idempotency-Key": "create-" + order_id})
    again = create(client, body, **{"Idempotency-Key": "create-" + order_id})
    assert again.status_code == 201 and again.get_json() == first.get_json()


def test_idempotency_key_with_a_different_body_is_refused(client, order_id):
    key = {"Idempotency-Key": "create-" + order_id}
    create(client, {"order_id": order_id, "amount": 99_000}, **key)
    response = create(client, {"order_id": order_id + "X", "amount": 99_000}, **key)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["detail"]


@pytest.mark.parametrize("key", ["", "x" * 256, "bad key", "é"])
def test_malformed_idempotency_keys_are_refused(client, order_id, key):
    response = create(client, {"order_id": order_id, "amount": 99_000}, **{"Idempotency-Key": key})
    assert response.status_code == 400


def test_every_creation_is_recorded_as_an_event(client, order_id):
    created = create(client, {"order_id": order_id, "amount": 99_000}).get_json()
    events = db.session.scalars(
        sa.select(PaymentEvent).where(PaymentEvent.payment_id == stored(created["id"]).id)
    ).all()
    assert [(e.from_status, e.to_status, e.source) for e in events] == [(None, "pending", "api")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 1000}, "order_id"),
        ({"order_id": "ORD 1", "amount": 1000}, "order_id"),
        ({"order_id": "ORD#1", "amount": 1000}, "order_id"),
        ({"order_id": "ORD-1\n", "amount": 1000}, "order_id"),
        ({"order_id": "x'; DROP TABLE payments;--", "amount": 1000}, "order_id"),
        ({"order_id": "X" * 51, "amount": 1000}, "order_id"),
        ({"order_id": "ORD-1"}, "amount"),
        ({"order_id": "ORD-1", "amount": 1000.5}, "amount"),
        ({"order_id": "ORD-1", "amount": "1000"}, "amount"),
        ({"order_id": "ORD-1", "amount": True}, "amount"),
        ({"order_id": "ORD-1", "amount": 0}, "amount"),
        ({"order_id": "ORD-1", "amount": -5}, "amount"),
        ({"order_id": "ORD-1", "amount": 10**13}, "amount"),
        ({"order_id": "ORD-1", "amount": 1000, "currency": "USD"}, "currency"),
        ({"order_id": "ORD-1", "amount": 1000, "payment_method": "bitcoin"}, "payment_method"),
        ({"order_id": "ORD-1", "amount": 1000, "expiry_duration": 0}, "expiry_duration"),
        (
            {"order_id": "ORD-1", "amount": 1000, "customer_details": {"email": "not-an-email"}},
            "customer_details.email",
        ),
        (
            {
                "order_id": "ORD-1",
                "amount": 1000,
                "item_details": [{"name": "A\x00", "price": 1000}],
            },
            "item_details.0.name",
        ),
        (
            {"order_id": "ORD-1", "amount": 1000, "item_details": [{"name": "A", "price": 999.9}]},
            "item_details.0.price",
        ),
        (
            {
                "order_id": "ORD-1",
                "amount": 1000,
                "item_details": [{"name": "A", "price": 1000, "quantity": 0}],
            },
            "item_details.0.quantity",
        ),
        ({"order_id": "ORD-1", "amount": 1000, "item_details": "lots"}, "item_details"),
    ],
)
def test_invalid_requests_get_400_naming_the_field(client, body, field):
    response = create(client, body)
    assert response.status_code == 400
    payload = response.get_json()
    assert payload["detail"] == "request body is invalid"
    assert field in [e["field"] for e in payload["errors"]]


def test_unknown_method_error_lists_the_allowed_methods(client):
    response = create(client, {"order_id": "ORD-1", "amount": 1000, "payment_method": "paypal"})
    message = response.get_json()["errors"][0]["message"]
    assert all(m in message for m in ("credit_card", "bank_transfer", "e_wallet", "qris", "retail"))


def test_items_that_do_not_add_up_get_400_naming_the_mismatch(client, order_id):
    body = {
        "order_id": order_id,
        "amount": 100_000,
        "item_details": [{"name": "Kereta", "price": 90_000}],
    }
    response = create(client, body)
    assert response.status_code == 400
    assert response.get_json()["detail"] == "item_details add up to 90000 but amount is 100000"
    assert client.get(f"/payments/order/{order_id}").status_code == 404


def test_customer_text_is_stored_verbatim_not_interpreted(client, order_id):
    hostile = {"first_name": "<script>alert(1)</script>", "email": "a@b.co"}
    created = create(client, {"order_id": order_id, "amount": 1000, "customer_details": hostile})
    assert created.status_code == 201
    assert stored(created.get_json()["id"]).customer["first_name"] == "<script>alert(1)</script>"


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("order_id=ORD-1&amount=1000", "application/x-www-form-urlencoded", 415),
        ("{}", "text/plain", 415),
        ("{", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('"just a string"', "application/json", 400),
        ("[" * 30_000 + "]" * 30_000, "application/json", 400),
        ("\xff\xfe", "application/json", 400),
        ('{"order_id": "' + "A" * 70_000 + '"}', "application/json", 413),
    ],
)
def test_bodies_that_are_not_a_json_object_get_a_clear_4xx(client, data, content_type, status):
    response = client.post("/payments", data=data, content_type=content_type)
    assert response.status_code == status
    assert response.is_json and response.get_json()["detail"]


def test_multipart_bodies_are_refused_as_unsupported(client):
    response = client.post(
        "/payments", data={"order_id": "ORD-1"}, content_type="multipart/form-data"
    )
    assert response.status_code == 415


@pytest.mark.parametrize(
    "path",
    [
        "/payments/not-a-payment",
        "/payments/00000000-0000-0000-0000-000000000000",
        "/payments/payment-NOPE",
        "/payments/order/NOPE",
        "/payments/a/b/c",
    ],
)
def test_unknown_payments_are_404_json(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.is_json and response.get_json()["detail"]


def test_the_old_manual_status_override_is_gone(client, order_id):
    created = create(client, {"order_id": order_id, "amount": 1000}).get_json()
    response = client.put(f"/payments/{created['id']}/status", json={"status": "SUCCESS"})
    assert response.status_code == 405 and response.is_json
    assert client.get(f"/payments/{created['id']}").get_json()["status"] == "pending"


def test_midtrans_refusal_is_502_and_leaves_a_failed_attempt(client, order_id, midtrans_simulator):
    midtrans_simulator.fault(
        status=400,
        body=json.dumps({"error_messages": ["customer_details.email is invalid"]}),
        times=1,
    )

    response = create(client, {"order_id": order_id, "amount": 50_000})

    assert response.status_code == 502
    assert response.get_json()["errors"] == [
        {"gateway_message": "customer_details.email is invalid"}
    ]
    [attempt] = client.get(f"/payments/order/{order_id}").get_json()
    assert (attempt["status"], attempt["status_detail"]) == ("failed", "gateway_rejected")


def test_a_retry_after_a_gateway_failure_opens_a_new_attempt(client, order_id, midtrans_simulator):
    midtrans_simulator.fault(status=500, times=1)
    key = {"Idempotency-Key": "k-" + order_id}
    assert create(client, {"order_id": order_id, "amount": 50_000}, **key).status_code == 503

    retried = create(client, {"order_id": order_id, "amount": 50_000}, **key)

    assert retried.status_code == 201
    assert retried.get_json()["gateway_order_id"] == f"{order_id}~2"


@pytest.mark.parametrize("status", [500, 503])
def test_midtrans_server_errors_are_503_with_retry_after(
    client, order_id, midtrans_simulator, status
):
    midtrans_simulator.fault(status=status, times=1)
    response = create(client, {"order_id": order_id, "amount": 50_000})
    assert response.status_code == 503 and response.headers["Retry-After"]


def test_an_html_error_page_from_midtrans_is_503_not_500(client, order_id, midtrans_simulator):
    midtrans_simulator.fault(status=502, body="<html><body>Bad Gateway</body></html>", times=1)
    assert create(client, {"order_id": order_id, "amount": 50_000}).status_code == 503


def test_a_slow_midtrans_is_504_quickly_and_the_attempt_is_recorded(
    app, client, order_id, midtrans_simulator, monkeypatch
):
    use_gateway(app, monkeypatch, timeout=(1.0, 0.3))
    midtrans_simulator.fault(delay_seconds=2, times=1)

    response = create(client, {"order_id": order_id, "amount": 50_000})

    assert response.status_code == 504
    [attempt] = client.get(f"/payments/order/{order_id}").get_json()
    assert (attempt["status"], attempt["status_detail"]) == ("failed", "gateway_timeout")
    assert attempt["snap_token"] is None


def test_an_unreachable_midtrans_is_503(app, client, order_id, monkeypatch):
    use_gateway(app, monkeypatch, base_url="http://127.0.0.1:9")
    assert create(client, {"order_id": order_id, "amount": 50_000}).status_code == 503


def test_a_wrong_server_key_is_502_and_not_blamed_on_the_caller(app, client, order_id, monkeypatch):
    use_gateway(app, monkeypatch, server_key="SB-Mid-server-WRONG")
    response = create(client, {"order_id": order_id, "amount": 50_000})
    assert response.status_code == 502
    assert "credentials" in response.get_json()["detail"]
    [attempt] = client.get(f"/payments/order/{order_id}").get_json()
    assert attempt["status_detail"] == "gateway_auth_failed"


def test_an_unexpected_error_is_a_json_500_without_a_trace(client, monkeypatch):
    from tiketq.payments import queries

    def explode(reference):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(queries, "get_payment", explode)
    response = client.get("/payments/whatever")
    assert response.status_code == 500
    assert response.get_json() == {"detail": "internal error", "errors": []}
    assert b"secret internals" not in response.data and b"Traceback" not in response.data
