"""Every address we hand out comes from PUBLIC_BASE_URL, never from the request's headers."""

from __future__ import annotations

import pytest

from tiketq.config import ConfigError, from_environ, validate

PUBLIC = "https://pay.tiketq.example"


@pytest.fixture
def shop(committed):
    """An app with a public address of its own, behind one proxy."""
    return committed(PUBLIC_BASE_URL=PUBLIC, PROXY_FIX_HOPS=1).test_client()


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example"},
        {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"},
        {"X-Forwarded-Prefix": "/evil", "X-Forwarded-Port": "6666"},
    ],
)
def test_a_create_with_forged_host_headers_stores_and_returns_only_public_addresses(
    shop, midtrans_simulator, order_id, headers
):
    response = shop.post(
        "/payments", json={"order_id": order_id, "amount": 150_000}, headers=headers
    )
    payment_id = response.get_json()["id"]

    assert response.get_json()["payment_url"] == f"{PUBLIC}/checkout/{payment_id}"
    callbacks = midtrans_simulator.transaction(order_id)["request"]["callbacks"]
    assert callbacks == {"finish": f"{PUBLIC}/checkout/{payment_id}/finish"} | {
        "error": f"{PUBLIC}/checkout/{payment_id}/finish"
    }


def test_the_genuine_create_after_a_forged_one_gets_public_addresses(
    shop, midtrans_simulator, order_id
):
    body = {"order_id": order_id, "amount": 150_000}
    shop.post("/payments", json=body, headers={"Host": "evil.example"})

    genuine = shop.post("/payments", json=body)

    assert genuine.get_json()["payment_url"].startswith(f"{PUBLIC}/checkout/")
    finish = midtrans_simulator.transaction(order_id)["request"]["callbacks"]["finish"]
    assert finish.startswith(f"{PUBLIC}/checkout/")


def test_inside_the_platform_the_payment_url_is_still_the_travellers_address(shop, order_id):
    # The transaction service calls http://payment-service:8000 inside compose.
    response = shop.post(
        "/payments",
        json={"order_id": order_id, "amount": 150_000},
        base_url="http://payment-service:8000",
    )

    assert response.get_json()["payment_url"].startswith(f"{PUBLIC}/checkout/")


def test_the_proxy_still_tells_the_travellers_scheme_and_address(shop, order_id):
    created = shop.post("/payments", json={"order_id": order_id, "amount": 150_000})
    page = shop.get(
        f"/checkout/{created.get_json()['id']}",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
    )

    assert page.headers["Strict-Transport-Security"].startswith("max-age=")


def test_outside_production_the_public_address_is_this_machines_port():
    assert from_environ({"PORT": "8123"}, "/srv/instance")["PUBLIC_BASE_URL"] == (
        "http://127.0.0.1:8123"
    )
    configured = from_environ({"PUBLIC_BASE_URL": f"{PUBLIC}/"}, "/srv/instance")
    assert configured["PUBLIC_BASE_URL"] == PUBLIC


@pytest.mark.parametrize(
    "url", ["pay.tiketq.example", "ftp://pay.tiketq.example", "https://", f"{PUBLIC}?x=1"]
)
def test_a_public_address_that_is_not_a_base_url_is_refused(url):
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        validate(from_environ({"PUBLIC_BASE_URL": url}, "/srv/instance"))
