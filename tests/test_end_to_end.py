"""The whole path over HTTP: the service on loopback and a Midtrans simulator notifying it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import jwt
import pytest
import requests
import sqlalchemy as sa

import midtrans_simulator as simulator
from tests.support.config import SERVER_KEY
from tests.support.inbox_worker import inbox_worker
from tests.support.receiver import Receiver, start_receiver
from tests.support.servers import serve_in_thread
from tests.support.simulator import Simulator
from tiketq.extensions import db
from tiketq.gateway import EXTENSION_KEY, current_gateway
from tiketq.gateway.midtrans import MidtransGateway
from tiketq.outbound import current_outbound
from tiketq.payments.models import Notification, Payment, utcnow
from tiketq.worker import run_once

# Every test serves the app over HTTP with real commits and waits for its worker.
pytestmark = pytest.mark.slow

JWT_SECRET = "end-to-end-confirmation-secret-32b"


@pytest.fixture
def transaction_service() -> Iterator[Receiver]:
    yield from start_receiver()


@pytest.fixture
def stack(committed, transaction_service, tmp_path):
    """The service over HTTP, and a simulator that sends notifications to it (or not).

    A notifying simulator comes with a worker thread applying what the service stores, as the
    worker process does in production; without notifications the test runs the worker itself.
    """

    def build(*, notify: bool) -> tuple[str, Simulator, object]:
        service = committed(TRANSACTION_SERVICE_URL=transaction_service.url, JWT_SECRET=JWT_SECRET)
        service_url, service_server = serve_in_thread(service)
        sim_app = simulator.create_app(
            server_key=SERVER_KEY,
            state_path=str(tmp_path / "sim.sqlite3"),
            notification_url=f"{service_url}/payments/webhook" if notify else None,
            time_scale=0.001,
        )
        sim_url, sim_server = serve_in_thread(sim_app)
        # The service reaches this simulator instead of the session's one.
        service.extensions[EXTENSION_KEY] = MidtransGateway(
            server_key=SERVER_KEY,
            client_key="SB-Mid-client-TESTKEY",
            is_production=False,
            base_url=sim_url,
            timeout=(2.0, 5.0),
        )
        servers.extend([service_server, sim_server])
        if notify:
            workers.enter_context(inbox_worker(service))
        return service_url, Simulator(sim_url), service

    servers: list = []
    with ExitStack() as workers:
        yield build
    for server in servers:
        server.shutdown()


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_a_simulated_payment_notifies_the_service_whose_worker_marks_it_paid(stack, order_id):
    service_url, sim, service = stack(notify=True)
    created = requests.post(
        f"{service_url}/payments", json={"order_id": order_id, "amount": 275_000}, timeout=10
    )
    assert created.status_code == 201
    payment_id = created.json()["id"]

    sim.pay(order_id, "bca_va", "pending")
    sim.control(
        "POST", f"/transactions/{order_id}/transition", {"transaction_status": "settlement"}
    )

    def paid():
        body = requests.get(f"{service_url}/payments/{payment_id}", timeout=5).json()
        return body if body["status"] == "success" else None

    body = wait_for(paid)
    assert body["payment_type"] == "bank_transfer" and body["paid_at"]

    def all_delivered():
        deliveries = sim.control("GET", f"/notifications?order_id={order_id}").json()
        return len(deliveries) >= 2 and {d["status"] for d in deliveries} == {"delivered"}

    # The worker may have asked Midtrans on the pending notification and found it settled
    # already, before the settlement notification was answered.
    wait_for(all_delivered)
    # The service stored what Midtrans sent and applied what Midtrans's status API answered.
    assert sim.calls("core.status", order_id) >= 1
    with service.app_context():
        outcomes = db.session.scalars(
            sa.select(Notification.outcome).where(Notification.order_id == order_id)
        )
        assert "applied" in set(outcomes)


def test_without_notifications_the_worker_reconciles_and_confirms_exactly_once(
    stack, order_id, transaction_service
):
    service_url, sim, service = stack(notify=False)
    created = requests.post(
        f"{service_url}/payments", json={"order_id": order_id, "amount": 275_000}, timeout=10
    ).json()
    sim.pay(order_id, "gopay", "settlement")

    with service.app_context():
        payment = db.session.get(Payment, uuid.UUID(created["id"]))
        payment.next_check_at = utcnow()
        db.session.commit()
        for _ in range(3):
            run_once(current_gateway(), current_outbound())

    assert (
        requests.get(f"{service_url}/payments/{created['id']}", timeout=5).json()["status"]
        == "success"
    )
    confirmations = [r for r in transaction_service.received if r.path.endswith("/confirm")]
    assert [r.path for r in confirmations] == [f"/transactions/payments/{order_id}/confirm"]
    claims = jwt.decode(confirmations[0].json()["token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["token"] == "success" and claims["order_id"] == order_id
