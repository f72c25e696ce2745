"""Who may do what to an order: its fixed amount, what a caller without a key learns, its id."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.support.api import create, stored, transaction_service_payload
from tests.support.config import CONFIRMATION_SECRET
from tiketq import auth, worker
from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.outbound import current_outbound
from tiketq.payments.models import Payment, PaymentEvent
from tiketq.payments.status import PaymentStatus

STAFF_KEY = "staff-key-for-amount-changes"
CALLER_KEY = "caller-key-of-the-api-gateway"


@pytest.fixture
def keys(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """A staff key and a caller key that the app accepts for this test only."""
    monkeypatch.setitem(app.extensions, auth.EXTENSION_KEY, app.extensions[auth.EXTENSION_KEY])
    monkeypatch.setitem(app.config, "ADMIN_API_KEYS", [f"ops-desk={STAFF_KEY}"])
    monkeypatch.setitem(app.config, "API_KEYS", [f"api-gateway={CALLER_KEY}"])
    auth.init_app(app)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def end(payment_id: str, status: PaymentStatus = PaymentStatus.EXPIRED) -> None:
    """End an attempt as the expiry job or a failed Snap call would."""
    stored(payment_id).transition_to(status, source="test")
    db.session.commit()


@pytest.mark.parametrize("ended", [PaymentStatus.EXPIRED, PaymentStatus.FAILED])
def test_a_lower_amount_after_the_attempt_ended_is_refused_naming_both(client, order_id, ended):
    first = create(client, {"order_id": order_id, "amount": 150_000}).get_json()
    end(first["id"], ended)

    response = create(client, {"order_id": order_id, "amount": 1_000})

    assert response.status_code == 409
    body = response.get_json()
    assert "150000 IDR" in body["detail"] and "1000 IDR" in body["detail"]
    assert body["errors"][0]["order_amount"] == 150_000 and body["errors"][0]["requested"] == 1_000
    assert (
        db.session.scalar(
            sa.select(sa.func.count()).select_from(Payment).where(Payment.order_id == order_id)
        )
        == 1
    )


def test_the_same_amount_after_expiry_opens_the_next_attempt(client, order_id):
    first = create(client, {"order_id": order_id, "amount": 150_000}).get_json()
    end(first["id"])

    second = create(client, {"order_id": order_id, "amount": 150_000})

    assert second.status_code == 201
    assert second.get_json()["gateway_order_id"] == f"{order_id}~2"


def test_a_caller_key_cannot_change_the_amount_either(client, order_id, keys):
    first = create(client, {"order_id": order_id, "amount": 150_000}).get_json()
    end(first["id"])

    response = create(client, {"order_id": order_id, "amount": 1_000}, **bearer(CALLER_KEY))

    assert response.status_code == 409


def test_a_staff_key_may_open_an_attempt_at_another_amount_and_it_is_recorded(
    client, order_id, keys
):
    first = create(client, {"order_id": order_id, "amount": 150_000}).get_json()
    end(first["id"])

    response = create(client, {"order_id": order_id, "amount": 120_000}, **bearer(STAFF_KEY))

    assert response.status_code == 201
    changed = response.get_json()
    assert changed["amount"] == 120_000
    event = db.session.scalar(
        sa.select(PaymentEvent).where(PaymentEvent.payment_id == uuid.UUID(changed["id"]))
    )
    assert event.source == "api"
    assert event.data == {"amount_changed": {"from": 150_000, "to": 120_000}, "by": "ops-desk"}
    # The order's amount is now the staff's: later attempts follow it, the old one is refused.
    end(changed["id"])
    assert create(client, {"order_id": order_id, "amount": 150_000}).status_code == 409
    assert create(client, {"order_id": order_id, "amount": 120_000}).status_code == 201


def test_a_wrong_key_on_an_anonymous_create_is_refused_not_ignored(client, order_id, keys):
    response = create(client, {"order_id": order_id, "amount": 150_000}, **bearer("not-a-key"))

    assert response.status_code == 401


def test_the_transaction_services_retry_still_gets_its_payment_back(client, order_id):
    first = create(client, transaction_service_payload(order_id))
    again = create(client, transaction_service_payload(order_id))

    assert first.status_code == again.status_code == 201
    assert again.get_json()["id"] == first.get_json()["id"]
    assert set(again.get_json()) >= {"transaction_id", "payment_url"}
    # Nothing about the traveller comes back, to anyone.
    assert "sari@example.co.id" not in again.get_data(as_text=True)


def test_an_anonymous_create_with_another_body_learns_nothing_of_the_live_payment(client, order_id):
    victim = create(client, transaction_service_payload(order_id)).get_json()
    stranger = transaction_service_payload(order_id)
    stranger["customer_details"] = {"email": "stranger@example.com"}

    response = create(client, stranger)

    assert response.status_code == 409
    text = response.get_data(as_text=True)
    assert victim["id"] not in text and victim["snap_token"] not in text


def test_an_anonymous_repeat_with_another_idempotency_key_learns_nothing(client, order_id):
    body = transaction_service_payload(order_id)
    victim = create(client, body, **{"Idempotency-Key": "victims-key-1"}).get_json()

    other_key = create(client, body, **{"Idempotency-Key": "strangers-key"})
    no_key = create(client, body)

    for response in (other_key, no_key):
        assert response.status_code == 409
        assert victim["snap_token"] not in response.get_data(as_text=True)
    same = create(client, body, **{"Idempotency-Key": "victims-key-1"})
    assert same.status_code == 201 and same.get_json()["id"] == victim["id"]


def test_a_caller_with_a_key_gets_the_live_payment_for_any_body(client, order_id, keys):
    victim = create(client, transaction_service_payload(order_id)).get_json()

    response = create(client, {"order_id": order_id, "amount": 1_275_000}, **bearer(CALLER_KEY))

    assert response.status_code == 201 and response.get_json()["id"] == victim["id"]


@pytest.mark.parametrize(
    ("order_id", "says"),
    [
        ("ORD-1~2", "'~'"),
        ("~", "'~'"),
        (".", "'.' or '..'"),
        ("..", "'.' or '..'"),
    ],
)
def test_order_ids_that_could_name_another_attempt_or_path_are_refused(client, order_id, says):
    response = create(client, {"order_id": order_id, "amount": 150_000})

    assert response.status_code == 400
    error = response.get_json()["errors"][0]
    assert error["field"] == "order_id" and says in error["message"]


def test_an_order_named_like_another_orders_retry_cannot_squat_it(client, order_id):
    first = create(client, {"order_id": order_id, "amount": 150_000}).get_json()
    assert create(client, {"order_id": f"{order_id}~2", "amount": 150_000}).status_code == 400
    end(first["id"])

    assert create(client, {"order_id": order_id, "amount": 150_000}).status_code == 201


def test_long_order_ids_that_share_a_beginning_keep_their_retries_apart(client):
    base = "L" + uuid.uuid4().hex + "X" * 16
    mine, theirs = base + "1", base + "2"
    for order in (theirs, mine):
        end(create(client, {"order_id": order, "amount": 150_000}).get_json()["id"])
    assert create(client, {"order_id": theirs, "amount": 150_000}).status_code == 201

    retried = create(client, {"order_id": mine, "amount": 150_000})

    assert retried.status_code == 201
    assert len(retried.get_json()["gateway_order_id"]) == 50


def test_the_confirmation_carries_the_amount_staff_set_and_that_was_paid(
    committed, receiver, midtrans_simulator, order_id
):
    app = committed(
        TRANSACTION_SERVICE_URL=receiver.url,
        JWT_SECRET=CONFIRMATION_SECRET,
        ADMIN_API_KEYS=[f"ops-desk={STAFF_KEY}"],
    )
    client = app.test_client()
    first = create(client, {"order_id": order_id, "amount": 150_000}).get_json()
    with app.app_context():
        end(first["id"])
    changed = create(client, {"order_id": order_id, "amount": 120_000}, **bearer(STAFF_KEY))
    gateway_order_id = changed.get_json()["gateway_order_id"]
    midtrans_simulator.pay(gateway_order_id, "bca_va", "settlement")
    client.post("/payments/webhook", json=midtrans_simulator.notification(gateway_order_id))

    with app.app_context():
        worker.run_once(current_gateway(), current_outbound())

    [confirmation] = [r for r in receiver.received if r.path.endswith(f"/{order_id}/confirm")]
    assert confirmation.json()["gateway_response"]["amount"] == 120_000


def test_a_staff_cancel_through_the_api_records_the_keys_name(client, order_id, keys):
    payment = create(client, {"order_id": order_id, "amount": 150_000}).get_json()

    response = client.post(f"/payments/{payment['id']}/cancel", json={}, headers=bearer(STAFF_KEY))

    assert response.status_code == 200
    event = db.session.scalars(
        sa.select(PaymentEvent)
        .where(PaymentEvent.payment_id == uuid.UUID(payment["id"]))
        .order_by(PaymentEvent.id.desc())
    ).first()
    assert (event.to_status, event.data) == ("canceled", {"reason": None, "api_key": "ops-desk"})
