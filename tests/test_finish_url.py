"""Back to TiketQ: FINISH_URL, a payment's own finish_url on allowed hosts, and where they lead."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.support.api import transaction_service_payload
from tiketq.checkout.addresses import ReturnRules, finish_url_problem
from tiketq.extensions import db
from tiketq.payments.models import Payment, utcnow
from tiketq.payments.service import NewPayment
from tiketq.payments.status import PaymentStatus

ORDERS = "https://tiketq.example/orders/{order_id}"
HOSTS = frozenset({"tiketq.example", "m.tiketq.example"})


@pytest.fixture
def finish_hosts(app, monkeypatch) -> None:
    """The allow-list as config.py builds it: FINISH_URL_HOSTS, FINISH_URL unset."""
    monkeypatch.setitem(app.config, "FINISH_URL", None)
    monkeypatch.setitem(app.config, "FINISH_URL_HOSTS", HOSTS)


@pytest.fixture
def orders_page(app, monkeypatch) -> None:
    """FINISH_URL set to TiketQ's order page; its host is the only allowed one."""
    monkeypatch.setitem(app.config, "FINISH_URL", ORDERS)
    monkeypatch.setitem(app.config, "FINISH_URL_HOSTS", frozenset({"tiketq.example"}))


def create(client, order_id: str, **fields):
    return client.post("/payments", json={**transaction_service_payload(order_id), **fields})


def stored(payment_id: str) -> Payment:
    return db.session.get(Payment, uuid.UUID(payment_id))


def settle(payment_id: str) -> None:
    payment = stored(payment_id)
    payment.transition_to(PaymentStatus.SUCCESS, source="api")
    payment.paid_at = utcnow()
    db.session.commit()


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/orders/1",
        "https://tiketq.example.evil.example/orders/1",
        "https://eviltiketq.example/",
        "https://tiketq.example@evil.example/",
        "https://evil.example\\@tiketq.example/",
        "https://evil.example\\.tiketq.example/",
        "javascript://tiketq.example/%0aalert(1)",
        "ftp://tiketq.example/orders",
        "//tiketq.example/orders",
        "/orders/1",
        "tiketq.example/orders",
        "https://tiketq.example /orders",
        "https://tiketq.example/orders\n1",
        "https://tiketq.example./orders",
    ],
)
def test_a_finish_url_off_the_allowed_hosts_is_a_400_naming_the_field_and_hosts(
    client, order_id, finish_hosts, url
):
    response = create(client, order_id, finish_url=url)

    assert response.status_code == 400
    (error,) = response.get_json()["errors"]
    assert error["field"] == "finish_url"
    assert "m.tiketq.example, tiketq.example" in error["message"]
    assert db.session.scalars(sa.select(Payment).where(Payment.order_id == order_id)).all() == []


def test_without_finish_url_hosts_no_finish_url_is_accepted(client, order_id, app, monkeypatch):
    monkeypatch.setitem(app.config, "FINISH_URL_HOSTS", frozenset())
    response = create(client, order_id, finish_url="https://tiketq.example/orders/1")
    assert response.status_code == 400
    assert "FINISH_URL_HOSTS" in response.get_json()["errors"][0]["message"]


def test_production_accepts_only_https():
    rules = ReturnRules(hosts=HOSTS, https_only=True)
    assert finish_url_problem("https://tiketq.example/orders/1", rules) is None
    assert "https" in finish_url_problem("http://tiketq.example/orders/1", rules)
    relaxed = ReturnRules(hosts=HOSTS, https_only=False)
    assert finish_url_problem("http://tiketq.example:8080/orders/1", relaxed) is None


def test_a_finish_url_on_an_allowed_host_is_stored_and_carried_to_the_next_attempt(
    client, order_id, finish_hosts
):
    url = "https://M.TiketQ.example/orders/ORD-1?from=pay"
    response = create(client, order_id, finish_url=url)
    assert response.status_code == 201
    first = stored(response.get_json()["id"])
    assert first.finish_url == url

    first.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    page = client.get(f"/checkout/{first.id}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    retried = client.post(f"/checkout/{first.id}/retry", data={"csrf_token": token})

    fresh = stored(retried.headers["Location"].split("/")[2].split("?")[0])
    assert fresh.attempt == 2 and fresh.finish_url == url


def test_a_different_finish_url_is_a_different_request():
    base = NewPayment(
        order_id="ORD-1",
        amount=150_000,
        payment_method=None,
        customer={},
        items=(),
        description=None,
        expiry_hours=1,
    )
    other = NewPayment(**{**base.__dict__, "finish_url": "https://tiketq.example/o/1"})
    assert base.fingerprint() != other.fingerprint()


def test_snaps_finish_redirect_leads_to_finish_url_whatever_the_query_says(
    client, order_id, orders_page
):
    payment = create(client, order_id).get_json()
    response = client.get(
        f"/checkout/{payment['id']}/finish?order_id=ORD-X&status_code=200"
        "&transaction_status=settlement&next=https://evil.example/"
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"https://tiketq.example/orders/{order_id}"


def test_the_template_may_name_the_payment_too(client, order_id, app, monkeypatch):
    monkeypatch.setitem(app.config, "FINISH_URL", "https://tiketq.example/p/{payment_id}/done")
    monkeypatch.setitem(app.config, "FINISH_URL_HOSTS", frozenset({"tiketq.example"}))
    payment = create(client, order_id).get_json()
    response = client.get(f"/checkout/{payment['id']}/finish")
    assert response.headers["Location"] == f"https://tiketq.example/p/{payment['id']}/done"


def test_a_payments_own_finish_url_wins_over_the_template(client, order_id, orders_page):
    url = "https://tiketq.example/app/orders/42"
    payment = create(client, order_id, finish_url=url).get_json()
    assert client.get(f"/checkout/{payment['id']}/finish").headers["Location"] == url


def test_a_stored_finish_url_whose_host_was_removed_is_not_followed(
    client, order_id, orders_page, app, monkeypatch
):
    payment = create(client, order_id, finish_url="https://tiketq.example/app/1").get_json()
    finish = f"/checkout/{payment['id']}/finish"
    assert client.get(finish).headers["Location"] == "https://tiketq.example/app/1"
    monkeypatch.setitem(app.config, "FINISH_URL", None)
    monkeypatch.setitem(app.config, "FINISH_URL_HOSTS", frozenset({"new.tiketq.example"}))
    assert client.get(finish).headers["Location"] == f"/receipt/{payment['id']}"


def test_the_paid_receipts_primary_button_goes_back_to_tiketq(client, order_id, orders_page):
    payment = create(client, order_id).get_json()
    settle(payment["id"])

    page = client.get(f"/receipt/{payment['id']}").get_data(as_text=True)

    button = re.search(r'<a [^>]*id="back"[^>]*>', page).group(0)
    assert f'href="https://tiketq.example/orders/{order_id}"' in button
    assert "button-primary" in button
    assert "Kembali ke TiketQ" in page


def test_without_an_address_the_paid_receipt_says_it_is_done_and_offers_no_button(
    client, order_id, finish_hosts
):
    payment = create(client, order_id).get_json()
    settle(payment["id"])

    page = client.get(f"/receipt/{payment['id']}").get_data(as_text=True)

    assert 'id="back"' not in page
    assert "Pembayaran Anda sudah kami terima" in page
    assert "Anda dapat menutup halaman ini" in page


def test_an_open_receipt_offers_the_way_back_without_making_it_the_primary_button(
    client, order_id, orders_page
):
    payment = create(client, order_id).get_json()
    page = client.get(f"/receipt/{payment['id']}").get_data(as_text=True)
    button = re.search(r'<a [^>]*id="back"[^>]*>', page).group(0)
    assert "button-primary" not in button
