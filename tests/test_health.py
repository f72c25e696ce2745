"""Health checks, and what the API does when the database is down."""

from tests.support.config import app_config
from tiketq import create_app

DOWN = "postgresql+psycopg2://postgres@127.0.0.1:1/nothing?connect_timeout=1"


def test_liveness_touches_nothing(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"


def test_readiness_reports_a_migrated_database(client):
    body = client.get("/health/ready").get_json()
    assert body["status"] == "ok" and body["database"] == "reachable"
    assert body["migrations"]["head"]


def _app_without_database(midtrans_simulator):
    return create_app(
        app_config(SQLALCHEMY_DATABASE_URI=DOWN, MIDTRANS_BASE_URL=midtrans_simulator.url)
    )


def test_readiness_is_503_when_the_database_is_down(midtrans_simulator):
    response = _app_without_database(midtrans_simulator).test_client().get("/health/ready")
    assert response.status_code == 503 and "unreachable" in response.get_json()["database"]


def test_liveness_stays_up_when_the_database_is_down(midtrans_simulator):
    assert _app_without_database(midtrans_simulator).test_client().get("/health").status_code == 200


def test_creating_a_payment_with_the_database_down_is_503_and_midtrans_is_not_called(
    midtrans_simulator,
):
    client = _app_without_database(midtrans_simulator).test_client()
    response = client.post("/payments", json={"order_id": "ORD-DBDOWN-1", "amount": 1000})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.get_json()["detail"] == "database unavailable; retry the request"
    assert midtrans_simulator.control("GET", "/transactions/ORD-DBDOWN-1").status_code == 404


def test_reading_a_payment_with_the_database_down_is_503(midtrans_simulator):
    client = _app_without_database(midtrans_simulator).test_client()
    assert client.get("/payments/00000000-0000-0000-0000-000000000000").status_code == 503
