"""Midtrans simulator notifications: bodies, signatures, destinations, retries and test modes."""

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from flask import Flask, Response, request
from werkzeug.serving import make_server

from midtrans_simulator import __main__ as simulator_main
from midtrans_simulator import create_app
from midtrans_simulator.notifier import Notifier
from midtrans_simulator.outbox import Outbox
from midtrans_simulator.store import Store

SERVER_KEY = "SB-Mid-server-NOTIFY"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{SERVER_KEY}:".encode()).decode()}
# Squeezes Midtrans's 342 minutes of retries into about 0.2 s.
TIME_SCALE = 0.00001
HANG = "hang"


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    text: str

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.text)


class Receiver:
    """A notification endpoint recording every POST and answering from a script per path.

    An answer is a status code, a (status, Location) pair, or HANG to outlast the timeout;
    the last answer of a script repeats, and unscripted paths answer 200.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls: list[Call] = []
        self._scripts: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def answer(self, path: str, *answers: Any) -> None:
        self._scripts[path] = list(answers)

    def calls_to(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path == path]

    def receive(self, path: str) -> Response:
        with self._lock:
            self.calls.append(
                Call(f"/{path}", dict(request.headers), request.get_data(as_text=True))
            )
            script = self._scripts.get(f"/{path}", [200])
            answer = script.pop(0) if len(script) > 1 else script[0]
        if answer == HANG:
            time.sleep(1.0)
            return Response(status=200)
        if isinstance(answer, tuple):
            status, location = answer
            return Response(status=status, headers={"Location": location})
        return Response(status=answer)


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
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    app = Flask("receiver")
    with serving(app) as url:
        receiver = Receiver(url)
        app.add_url_rule("/<path:path>", "receive", receiver.receive, methods=["POST"])
        yield receiver


@pytest.fixture
def make_sim(tmp_path) -> Callable[..., Any]:
    def make(notification_url: str | None = None) -> Any:
        app = create_app(
            server_key=SERVER_KEY,
            state_path=str(tmp_path / "sim.sqlite3"),
            notification_url=notification_url,
            time_scale=TIME_SCALE,
        )
        return app.test_client()

    return make


@pytest.fixture
def http(make_sim, receiver):
    return make_sim(f"{receiver.url}/hook")


def create(http, order_id: str = "ORDER-1", amount: int = 10000, headers=None) -> None:
    body = {"transaction_details": {"order_id": order_id, "gross_amount": amount}}
    response = http.post("/snap/v1/transactions", json=body, headers={**AUTH, **(headers or {})})
    assert response.status_code == 201, response.json


def pay(http, method: str, outcome: str, order_id: str = "ORDER-1", **extra) -> None:
    response = http.post(
        f"/control/transactions/{order_id}/pay",
        json={"method": method, "outcome": outcome, **extra},
    )
    assert response.status_code == 200, response.json


def transition(http, status: str, order_id: str = "ORDER-1") -> None:
    response = http.post(
        f"/control/transactions/{order_id}/transition", json={"transaction_status": status}
    )
    assert response.status_code == 200, response.json


def drain(http, timeout: float = 10) -> list[dict[str, Any]]:
    response = http.post("/control/notifications/drain", json={"timeout": timeout})
    assert response.status_code == 200, response.json
    return response.json


def signed(body: dict[str, Any]) -> bool:
    payload = body["order_id"] + body["status_code"] + body["gross_amount"] + SERVER_KEY
    return hashlib.sha512(payload.encode()).hexdigest() == body["signature_key"]


def bodies(receiver: Receiver, path: str = "/hook") -> list[dict[str, Any]]:
    return [call.body for call in receiver.calls_to(path)]


# --- What is sent --------------------------------------------------------------------------------


def test_settlement_is_posted_as_a_signed_midtrans_notification(http, receiver):
    create(http, amount=1200000)
    pay(http, "gopay", "settlement")

    drain(http)

    [call] = receiver.calls_to("/hook")
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["Accept"] == "application/json"
    assert call.headers["User-Agent"] == "Veritrans"
    body = call.body
    assert (body["status_code"], body["status_message"]) == ("200", "midtrans payment notification")
    assert (body["transaction_status"], body["payment_type"]) == ("settlement", "gopay")
    assert (body["gross_amount"], body["currency"], body["order_id"]) == (
        "1200000.00",
        "IDR",
        "ORDER-1",
    )
    assert body["merchant_id"] == "G141532850"
    for field in ("transaction_id", "transaction_time", "settlement_time", "expiry_time"):
        assert body[field], field
    assert signed(body)


@pytest.mark.parametrize(
    ("method", "outcome", "check"),
    [
        (
            "bca_va",
            "settlement",
            lambda b: b["va_numbers"][0]["bank"] == "bca" and b["payment_amounts"],
        ),
        ("bni_va", "settlement", lambda b: b["va_numbers"][0]["bank"] == "bni"),
        (
            "permata_va",
            "settlement",
            lambda b: "va_numbers" not in b and len(b["permata_va_number"]) == 16,
        ),
        ("echannel", "settlement", lambda b: b["biller_code"] == "70012" and b["bill_key"]),
        (
            "indomaret",
            "settlement",
            lambda b: (
                (b["store"], b["payment_type"]) == ("indomaret", "cstore")
                and b["payment_code"]
                and "fraud_status" not in b
            ),
        ),
        (
            "credit_card",
            "capture",
            lambda b: (
                b["masked_card"] == "48111111-1114"
                and (b["card_type"], b["eci"], b["channel_response_code"]) == ("credit", "05", "00")
                and b["bank"]
                and b["approval_code"]
                and (b["transaction_status"], b["fraud_status"]) == ("capture", "accept")
                and "settlement_time" not in b
            ),
        ),
        ("gopay", "settlement", lambda b: b["fraud_status"] == "accept"),
        (
            "other_qris",
            "settlement",
            lambda b: (
                (b["payment_type"], b["issuer"], b["acquirer"], b["transaction_type"])
                == ("qris", "gopay", "gopay", "on-us")
            ),
        ),
    ],
)
def test_each_method_notifies_its_own_fields_with_a_valid_signature(
    http, receiver, method, outcome, check
):
    create(http)
    pay(http, method, outcome)

    drain(http)

    [body] = bodies(receiver)
    assert body["status_code"] == "200"
    assert check(body)
    assert signed(body)


def test_pending_then_settlement_notifies_201_then_200_each_signed(http, receiver):
    create(http)
    pay(http, "bca_va", "pending")
    transition(http, "settlement")

    drain(http)

    sent = bodies(receiver)
    assert [(b["status_code"], b["transaction_status"]) for b in sent] == [
        ("201", "pending"),
        ("200", "settlement"),
    ]
    assert "settlement_time" not in sent[0]
    assert all(signed(body) for body in sent)
    assert sent[0]["signature_key"] != sent[1]["signature_key"]


@pytest.mark.parametrize(
    ("method", "outcome", "action", "status"),
    [
        ("bca_va", "pending", "/v2/ORDER-1/cancel", "cancel"),
        ("echannel", "pending", "/v2/ORDER-1/expire", "expire"),
        ("credit_card", "challenge", "/v2/ORDER-1/deny", "deny"),
        ("bni_va", "pending", "/snap/v1/transactions/{token}/cancel", "cancel"),
    ],
)
def test_cancel_expire_and_deny_are_notified_with_202(
    http, receiver, method, outcome, action, status
):
    create(http)
    pay(http, method, outcome)
    token = http.get("/control/transactions/ORDER-1").json["token"]

    assert http.post(action.format(token=token), json={}, headers=AUTH).status_code == 200
    drain(http)

    first, last = bodies(receiver)
    assert first["status_code"] == "201"
    assert (last["status_code"], last["transaction_status"]) == ("202", status)
    assert signed(last)


def test_paying_on_the_checkout_page_notifies(http, receiver):
    create(http)
    token = http.get("/control/transactions/ORDER-1").json["token"]

    http.post(f"/snap/v4/redirection/{token}", data={"method": "alfamart", "outcome": "settlement"})
    drain(http)

    assert [b["store"] for b in bodies(receiver)] == ["alfamart"]


def test_refund_is_notified_twice_the_second_time_bank_confirmed(http, receiver):
    create(http)
    pay(http, "gopay", "settlement")

    http.post(
        "/v2/ORDER-1/refund",
        json={"refund_key": "r1", "amount": 4000, "reason": "seat"},
        headers=AUTH,
    )
    drain(http)

    _, granted, confirmed = bodies(receiver)
    for body in (granted, confirmed):
        assert (body["status_code"], body["transaction_status"]) == ("200", "partial_refund")
        assert body["refund_amount"] == "4000.00"
        assert body["refunds"][0]["refund_key"] == "r1"
        assert signed(body)
    assert "bank_confirmed_at" not in granted["refunds"][0]
    assert confirmed["refunds"][0]["bank_confirmed_at"]


def test_a_call_that_changes_nothing_sends_nothing(http, receiver):
    create(http)
    pay(http, "gopay", "settlement")
    for _ in range(2):
        http.post("/v2/ORDER-1/refund", json={"refund_key": "once", "amount": 100}, headers=AUTH)

    assert len(drain(http)) == 3  # settlement, then the refund granted and confirmed


def test_customer_fee_is_in_the_signed_gross_amount_and_the_order_amount_in_metadata(
    http, receiver
):
    create(http, amount=145000)
    pay(http, "other_qris", "settlement", customer_fee=1015)

    drain(http)

    [body] = bodies(receiver)
    status = http.get("/v2/ORDER-1/status", headers=AUTH).json
    for report in (body, status):
        assert report["gross_amount"] == "146015.00"
        assert signed(report)
        assert report["metadata"]["extra_info"]["gross_amount_info"] == {
            "original_amount": "145000",
            "gross_amount": "146015",
            "customer_imposed_payment_fee": "1015",
        }


def test_negative_customer_fee_is_refused(http):
    create(http)

    response = http.post(
        "/control/transactions/ORDER-1/pay",
        json={"method": "gopay", "outcome": "settlement", "customer_fee": -1},
    )

    assert response.status_code == 400


# --- Delivery and retries ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "attempts"),
    [(500, 2), (503, 5), (400, 3), (404, 3), (418, 6), (401, 6)],
)
def test_retries_follow_midtrans_rules_for_the_answer(http, receiver, answer, attempts):
    receiver.answer("/hook", answer)
    create(http)
    pay(http, "gopay", "settlement")

    [delivery] = drain(http)

    assert len(receiver.calls_to("/hook")) == attempts
    assert (delivery["status"], delivery["attempts"]) == ("gave_up", attempts)
    assert [entry["response_code"] for entry in delivery["history"]] == [answer] * attempts
    assert delivery["body"]["transaction_status"] == "settlement"


@pytest.mark.slow
def test_a_receiver_that_times_out_gets_five_retries(http, receiver):
    receiver.answer("/hook", HANG)
    create(http)
    pay(http, "gopay", "settlement")

    [delivery] = drain(http)

    assert (delivery["status"], delivery["attempts"]) == ("gave_up", 6)
    assert {entry["error"] for entry in delivery["history"]} == {"timeout"}


def test_an_unreachable_receiver_gets_five_retries(make_sim):
    http = make_sim("http://127.0.0.1:9/hook")
    create(http)
    pay(http, "gopay", "settlement")

    [delivery] = drain(http)

    assert (delivery["status"], delivery["attempts"]) == ("gave_up", 6)
    assert delivery["history"][0]["error"].startswith("connection error")


def test_a_2xx_answer_ends_the_retries(http, receiver):
    receiver.answer("/hook", 503, 503, 204)
    create(http)
    pay(http, "gopay", "settlement")

    [delivery] = drain(http)

    assert delivery["status"] == "delivered"
    assert [entry["response_code"] for entry in delivery["history"]] == [503, 503, 204]
    assert len(receiver.calls_to("/hook")) == 3


@pytest.mark.parametrize("code", [301, 302, 303])
def test_301_302_303_are_neither_followed_nor_retried(http, receiver, code):
    receiver.answer("/hook", (code, "/elsewhere"))
    create(http)
    pay(http, "gopay", "settlement")

    [delivery] = drain(http)

    assert (delivery["status"], delivery["attempts"]) == ("gave_up", 1)
    assert len(receiver.calls_to("/hook")) == 1
    assert receiver.calls_to("/elsewhere") == []


@pytest.mark.parametrize("code", [307, 308])
def test_307_and_308_re_post_the_same_body_to_the_new_location(http, receiver, code):
    receiver.answer("/hook", (code, "/moved"))
    create(http)
    pay(http, "gopay", "settlement")

    [delivery] = drain(http)

    [original] = receiver.calls_to("/hook")
    [moved] = receiver.calls_to("/moved")
    assert moved.text == original.text
    assert moved.headers["User-Agent"] == "Veritrans"
    assert delivery["status"] == "delivered"
    assert delivery["history"][0]["redirected_to"] == [f"{receiver.url}/moved"]


def test_more_than_five_redirects_fail_the_attempt(http, receiver):
    receiver.answer("/hook", (307, "/hook"))
    create(http)
    pay(http, "gopay", "settlement")

    [delivery] = drain(http)

    assert len(delivery["history"][0]["redirected_to"]) == 5
    assert (delivery["status"], delivery["attempts"]) == ("gave_up", 6)
    assert len(receiver.calls_to("/hook")) == 6 * 6


def test_drain_answers_504_while_a_delivery_is_still_due(http, receiver):
    receiver.answer("/hook", HANG)
    create(http)
    pay(http, "gopay", "settlement")

    response = http.post("/control/notifications/drain", json={"timeout": 0.1})

    assert response.status_code == 504
    assert response.json[0]["status"] == "pending"


def test_notifications_can_be_listed_per_order(http, receiver):
    create(http, order_id="A")
    create(http, order_id="B")
    pay(http, "gopay", "settlement", order_id="A")
    pay(http, "gopay", "pending", order_id="B")
    drain(http)

    listed = http.get("/control/notifications?order_id=B").json

    assert [(d["order_id"], d["body"]["status_code"]) for d in listed] == [("B", "201")]
    assert listed[0]["url"] == f"{receiver.url}/hook"
    assert listed[0]["history"][0]["response_code"] == 200
    assert len(http.get("/control/notifications").json) == 2


# --- Destinations --------------------------------------------------------------------------------


def test_override_header_sends_only_to_its_first_three_urls(http, receiver):
    urls = ", ".join(f"{receiver.url}/{name}" for name in ("a", "b", "c", "d"))
    create(http, headers={"X-Override-Notification": urls})
    pay(http, "gopay", "settlement")

    drain(http)

    assert sorted(call.path for call in receiver.calls) == ["/a", "/b", "/c"]


def test_append_header_sends_to_its_urls_and_the_configured_one(http, receiver):
    create(http, headers={"X-Append-Notification": f"{receiver.url}/extra"})
    pay(http, "gopay", "settlement")

    drain(http)

    assert sorted(call.path for call in receiver.calls) == ["/extra", "/hook"]


def test_override_header_wins_over_append_header(http, receiver):
    create(
        http,
        headers={
            "X-Override-Notification": f"{receiver.url}/only",
            "X-Append-Notification": f"{receiver.url}/extra",
        },
    )
    pay(http, "gopay", "settlement")

    drain(http)

    assert [call.path for call in receiver.calls] == ["/only"]


def test_without_any_url_notifications_are_recorded_but_not_sent(make_sim, receiver):
    http = make_sim()
    create(http)
    pay(http, "gopay", "settlement")

    [delivery] = drain(http)

    assert (delivery["url"], delivery["status"], delivery["attempts"]) == (None, "no_url", 0)
    assert delivery["body"]["transaction_status"] == "settlement"
    assert receiver.calls == []


def test_a_transaction_with_its_own_url_is_notified_without_a_configured_one(make_sim, receiver):
    http = make_sim()
    create(http, headers={"X-Append-Notification": f"{receiver.url}/own"})
    pay(http, "gopay", "settlement")

    drain(http)

    assert [call.path for call in receiver.calls] == ["/own"]


# --- Test modes and replay -----------------------------------------------------------------------


def test_duplicates_mode_sends_extra_identical_copies(http, receiver):
    assert http.post("/control/notifications/mode", json={"duplicates": 2}).status_code == 200
    create(http)
    pay(http, "gopay", "settlement")

    drain(http)

    texts = [call.text for call in receiver.calls_to("/hook")]
    assert len(texts) == 3
    assert len(set(texts)) == 1


def test_hold_keeps_notifications_until_released_in_order(http, receiver):
    http.post("/control/notifications/mode", json={"hold": True})
    create(http)
    pay(http, "bca_va", "pending")
    transition(http, "settlement")

    held = drain(http)
    released = http.post("/control/notifications/release").json
    drain(http)

    assert {d["status"] for d in held} == {"held"}
    assert [d["status"] for d in released] == ["pending", "pending"]
    assert [b["status_code"] for b in bodies(receiver)] == ["201", "200"]


def test_reverse_mode_releases_held_notifications_newest_first(http, receiver):
    http.post("/control/notifications/mode", json={"hold": True, "reverse": True})
    create(http)
    pay(http, "bca_va", "pending")
    transition(http, "settlement")

    http.post("/control/notifications/release")
    drain(http)

    assert [b["transaction_status"] for b in bodies(receiver)] == ["settlement", "pending"]


def test_reverse_mode_sends_notifications_queued_together_newest_first(http, receiver):
    http.post("/control/notifications/mode", json={"reverse": True})
    create(http)
    pay(http, "gopay", "settlement")
    drain(http)

    http.post("/v2/ORDER-1/refund", json={"amount": 100}, headers=AUTH)
    drain(http)

    refunds = bodies(receiver)[1:]
    assert ["bank_confirmed_at" in body["refunds"][0] for body in refunds] == [True, False]


def test_resetting_the_mode_delivers_normally_again(http, receiver):
    http.post("/control/notifications/mode", json={"hold": True, "duplicates": 1})

    assert http.delete("/control/notifications/mode").status_code == 204
    create(http)
    pay(http, "gopay", "settlement")
    drain(http)

    assert http.get("/control/notifications/mode").json == {
        "duplicates": 0,
        "reverse": False,
        "hold": False,
    }
    assert len(receiver.calls) == 1


@pytest.mark.parametrize(
    "params",
    [{"duplicates": -1}, {"duplicates": True}, {"duplicates": 11}, {"hold": "yes"}, {"x": 1}, []],
)
def test_invalid_mode_is_rejected(http, params):
    assert http.post("/control/notifications/mode", json=params).status_code == 400


@pytest.mark.parametrize("params", [{"timeout": -1}, {"timeout": "5"}, {"order_id": 5}, [1]])
def test_invalid_drain_request_is_rejected(http, params):
    assert http.post("/control/notifications/drain", json=params).status_code == 400


def test_notify_resends_the_current_state(http, receiver):
    create(http)
    pay(http, "gopay", "settlement")
    drain(http)

    response = http.post("/control/transactions/ORDER-1/notify")
    drain(http)

    assert response.status_code == 202
    first, again = receiver.calls_to("/hook")
    assert again.body == first.body


def test_notify_of_an_unknown_or_unpaid_order_is_refused(http):
    create(http)

    assert http.post("/control/transactions/NOPE/notify").status_code == 404
    assert http.post("/control/transactions/ORDER-1/notify").status_code == 409


@pytest.mark.parametrize(
    ("method", "outcome"),
    [("bca_va", "settlement"), ("credit_card", "challenge"), ("gopay", "expire")],
)
def test_notification_on_demand_is_the_body_the_notifier_sends(http, receiver, method, outcome):
    create(http)
    pay(http, method, outcome)
    drain(http)

    on_demand = http.get("/control/transactions/ORDER-1/notification").json

    assert bodies(receiver) == [on_demand]
    assert signed(on_demand)


def test_notification_on_demand_after_a_refund_is_the_bank_confirmed_one(http, receiver):
    create(http)
    pay(http, "gopay", "settlement")
    http.post("/v2/ORDER-1/refund", json={"refund_key": "r1", "amount": 100}, headers=AUTH)
    drain(http)

    on_demand = http.get("/control/transactions/ORDER-1/notification").json

    assert bodies(receiver)[-1] == on_demand
    assert on_demand["refunds"][0]["bank_confirmed_at"]


# --- Processes and configuration -----------------------------------------------------------------


def test_two_simulators_on_one_state_file_never_make_the_same_attempt_twice(tmp_path, receiver):
    receiver.answer("/hook", 503)
    apps = [
        create_app(
            server_key=SERVER_KEY,
            state_path=str(tmp_path / "shared.sqlite3"),
            notification_url=f"{receiver.url}/hook",
            time_scale=TIME_SCALE,
        )
        for _ in range(2)
    ]
    order_ids = [f"ORDER-{n}" for n in range(8)]
    with serving(apps[0]) as first, serving(apps[1]) as second:
        bases = [first, second]
        for n, order_id in enumerate(order_ids):
            requests.post(
                f"{bases[n % 2]}/snap/v1/transactions",
                json={"transaction_details": {"order_id": order_id, "gross_amount": 1000}},
                headers=AUTH,
                timeout=10,
            ).raise_for_status()
            requests.post(
                f"{bases[(n + 1) % 2]}/control/transactions/{order_id}/pay",
                json={"method": "gopay", "outcome": "settlement"},
                timeout=10,
            ).raise_for_status()
        drained = [
            requests.post(f"{base}/control/notifications/drain", json={"timeout": 10}, timeout=20)
            for base in bases
        ]

    assert [response.status_code for response in drained] == [200, 200]
    deliveries = drained[1].json()
    assert [(d["status"], d["attempts"]) for d in deliveries] == [("gave_up", 5)] * 8
    per_order = {order_id: 0 for order_id in order_ids}
    for call in receiver.calls:
        per_order[call.body["order_id"]] += 1
    assert per_order == {order_id: 5 for order_id in order_ids}


def test_creating_the_app_starts_no_thread_until_the_first_request(tmp_path):
    def notifier_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "midtrans-simulator-notifier"}

    before = notifier_threads()
    app = create_app(server_key=SERVER_KEY, state_path=str(tmp_path / "lazy.sqlite3"))
    assert notifier_threads() - before == set()

    app.test_client().get("/control/notifications")

    assert len(notifier_threads() - before) == 1


@pytest.mark.parametrize(
    "options", [{"time_scale": 0}, {"notification_url": "ftp://example.com/hook"}]
)
def test_invalid_notification_configuration_is_refused(tmp_path, options):
    with pytest.raises(ValueError):
        create_app(server_key=SERVER_KEY, state_path=str(tmp_path / "s.db"), **options)


def test_command_line_passes_notification_options(monkeypatch, tmp_path):
    served: list[Flask] = []
    monkeypatch.setattr(
        simulator_main, "run_simple", lambda host, port, app, **kw: served.append(app)
    )

    simulator_main.main(
        [
            "--state",
            str(tmp_path / "cli.sqlite3"),
            "--notification-url",
            "http://127.0.0.1:9/a,http://127.0.0.1:9/b",
            "--time-scale",
            "0.01",
            "--notification-timeout",
            "15",
        ]
    )

    notifier = served[0].extensions["tiketq.simulator"].notifier
    assert (notifier.urls, notifier.time_scale, notifier.timeout) == (
        ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"],
        0.01,
        15.0,
    )


@pytest.mark.parametrize(
    ("time_scale", "timeout", "expected"),
    [(1.0, None, 15.0), (0.001, None, 0.5), (0.001, 15.0, 15.0), (1.0, 3.0, 3.0)],
)
def test_the_notification_timeout_scales_unless_set(tmp_path, time_scale, timeout, expected):
    outbox = Outbox(Store(str(tmp_path / "state.sqlite3")))
    notifier = Notifier(outbox, urls=[], time_scale=time_scale, timeout=timeout)
    assert notifier.timeout == expected
