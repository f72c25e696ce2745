"""The circuit breaker: a Midtrans that keeps failing is not asked again for a while."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from tests.support.config import SERVER_KEY, app_config
from tiketq import config, create_app
from tiketq.gateway import (
    EXTENSION_KEY,
    Answer,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
    NotificationHint,
    UntrustedAnswer,
)
from tiketq.gateway.breaker import CircuitBreaker
from tiketq.gateway.midtrans import MidtransGateway
from tiketq.payments.rules import Charge


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answer(charge: Charge = Charge.AWAITING) -> Answer:
    return Answer(charge=charge, gross_amount=Decimal("150000.00"), gateway_status="pending")


class Midtrans:
    """A gateway whose next answers the test scripts: an exception to raise, or a charge."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.script: list[Exception | Charge] = []

    def get_status(
        self,
        gateway_order_id: str,
        *,
        transaction_id: str | None = None,
        payment_type: str | None = None,
    ) -> Answer:
        self.calls.append(gateway_order_id)
        scripted = self.script.pop(0) if self.script else Charge.AWAITING
        if isinstance(scripted, Exception):
            raise scripted
        return answer(scripted)

    def verify_notification(self, body: dict[str, Any]) -> NotificationHint:
        return NotificationHint(
            order_id=body["order_id"],
            status_code="201",
            gross_amount="150000.00",
            transaction_status="pending",
            dedupe_key="key",
        )


def timeout() -> GatewayTimeout:
    return GatewayTimeout("core.status", "read timeout")


def open_circuit(breaker: CircuitBreaker) -> None:
    """Time out three calls in a row, the test breaker's threshold."""
    for _ in range(3):
        with pytest.raises(GatewayTimeout):
            breaker.get_status("ORD-1")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def midtrans() -> Midtrans:
    return Midtrans()


@pytest.fixture
def breaker(midtrans: Midtrans, clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(midtrans, threshold=3, cooldown=30, clock=clock)  # type: ignore[arg-type]


def test_calls_pass_through_while_midtrans_answers(breaker, midtrans):
    assert breaker.get_status("ORD-1").charge is Charge.AWAITING
    assert midtrans.calls == ["ORD-1"]


def test_after_the_threshold_of_failures_in_a_row_calls_fail_at_once(breaker, midtrans):
    midtrans.script = [timeout(), GatewayUnavailable("core.status", "HTTP 503"), timeout()]
    for _ in range(3):
        with pytest.raises((GatewayTimeout, GatewayUnavailable)):
            breaker.get_status("ORD-1")

    with pytest.raises(GatewayUnavailable, match="not asked"):
        breaker.get_status("ORD-2")
    assert midtrans.calls == ["ORD-1"] * 3


def test_a_refusal_means_midtrans_is_up_and_starts_the_count_again(breaker, midtrans):
    midtrans.script = [timeout(), timeout(), GatewayRejected("core.status", "HTTP 400"), timeout()]
    for _ in range(4):
        with pytest.raises((GatewayTimeout, GatewayRejected)):
            breaker.get_status("ORD-1")

    assert breaker.get_status("ORD-1").charge is Charge.AWAITING
    assert len(midtrans.calls) == 5


def test_after_the_cooldown_one_call_tries_and_an_answer_closes_the_circuit(
    breaker, midtrans, clock
):
    midtrans.script = [timeout()] * 3
    open_circuit(breaker)
    clock.now += 29
    with pytest.raises(GatewayUnavailable, match="not asked"):
        breaker.get_status("ORD-1")

    clock.now += 1
    assert breaker.get_status("ORD-1").charge is Charge.AWAITING
    assert breaker.get_status("ORD-1").charge is Charge.AWAITING
    assert len(midtrans.calls) == 5


def test_a_failed_try_keeps_the_circuit_open_for_another_cooldown(breaker, midtrans, clock):
    midtrans.script = [timeout()] * 4
    open_circuit(breaker)
    clock.now += 30
    with pytest.raises(GatewayTimeout):
        breaker.get_status("ORD-1")

    clock.now += 29
    with pytest.raises(GatewayUnavailable, match="not asked"):
        breaker.get_status("ORD-1")
    assert len(midtrans.calls) == 4


def test_while_one_call_tries_the_others_fail_fast(breaker, midtrans, clock):
    midtrans.script = [timeout()] * 3
    open_circuit(breaker)
    clock.now += 30

    def trying(gateway_order_id: str, **_: Any) -> Answer:
        # A second caller arrives while the first is still waiting on Midtrans.
        with pytest.raises(GatewayUnavailable, match="not asked"):
            breaker.get_status("ORD-2")
        return answer()

    midtrans.get_status = trying  # type: ignore[method-assign]
    assert breaker.get_status("ORD-1").charge is Charge.AWAITING


def test_notifications_are_read_even_when_the_circuit_is_open(breaker, midtrans):
    midtrans.script = [timeout()] * 3
    open_circuit(breaker)

    assert breaker.verify_notification({"order_id": "ORD-1"}).order_id == "ORD-1"


def test_the_lookup_keys_reach_midtrans_through_the_breaker(breaker, midtrans):
    seen = []

    def by_transaction(gateway_order_id: str, **keys: Any) -> Answer:
        seen.append((gateway_order_id, keys))
        return answer(Charge.PAID)

    midtrans.get_status = by_transaction  # type: ignore[method-assign]
    got = breaker.get_status("ORD-1", transaction_id="tx-1", payment_type="dana")

    assert got.charge is Charge.PAID
    assert seen == [("ORD-1", {"transaction_id": "tx-1", "payment_type": "dana"})]


def test_an_untrusted_answer_means_midtrans_is_up(breaker, midtrans):
    midtrans.script = [timeout(), timeout(), UntrustedAnswer("core.status", "other order")]
    for _ in range(3):
        with pytest.raises((GatewayTimeout, UntrustedAnswer)):
            breaker.get_status("ORD-1")

    midtrans.script = [timeout(), timeout()]
    for _ in range(2):
        with pytest.raises(GatewayTimeout):
            breaker.get_status("ORD-1")
    assert breaker.get_status("ORD-1").charge is Charge.AWAITING


def test_creates_answer_503_at_once_while_midtrans_is_known_to_be_slow(
    app, client, order_id, midtrans_simulator, monkeypatch
):
    gateway = MidtransGateway(
        server_key=SERVER_KEY,
        client_key="SB-Mid-client-TESTKEY",
        is_production=False,
        base_url=app.config["MIDTRANS_BASE_URL"],
        timeout=(1.0, 0.3),
    )
    monkeypatch.setitem(
        app.extensions, EXTENSION_KEY, CircuitBreaker(gateway, threshold=2, cooldown=60)
    )
    midtrans_simulator.fault(delay_seconds=1, times=3)
    body = {"amount": 50_000}
    slow = [client.post("/payments", json={**body, "order_id": f"{order_id}-{n}"}) for n in (1, 2)]
    assert [r.status_code for r in slow] == [504, 504]

    started = time.monotonic()
    refused = client.post("/payments", json={**body, "order_id": f"{order_id}-3"})

    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert time.monotonic() - started < 0.25
    [attempt] = client.get(f"/payments/order/{order_id}-3").get_json()
    assert (attempt["status"], attempt["status_detail"]) == ("failed", "gateway_unavailable")
    unasked = midtrans_simulator.control("GET", f"/transactions/{order_id}-3")
    assert unasked.status_code == 404


@pytest.mark.parametrize(("failures", "kind"), [(5, CircuitBreaker), (0, MidtransGateway)])
def test_the_breaker_is_on_unless_its_threshold_is_zero(database, failures, kind):
    built = create_app(app_config(MIDTRANS_BREAKER_FAILURES=failures))
    assert isinstance(built.extensions[EXTENSION_KEY], kind)


def test_the_breaker_defaults_to_five_failures_and_thirty_seconds(tmp_path):
    settings = config.from_environ({}, str(tmp_path))
    assert (settings["MIDTRANS_BREAKER_FAILURES"], settings["MIDTRANS_BREAKER_SECONDS"]) == (5, 30)
