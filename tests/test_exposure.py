"""Exposure by default: loopback binds, a loopback-only simulator control API, no secret in logs."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import sentry_sdk

import midtrans_simulator as simulator
from tests.support.config import SERVER_KEY, app_config
from tests.support.make_run import Run, wait_for_health
from tests.support.processes import READY_SECONDS, STOP_SECONDS, Served, free_port
from tiketq import create_app
from tiketq.logs import redact

ROOT = Path(__file__).resolve().parent.parent
# Keys shaped like the ones people really hold: token_urlsafe (what `payments api-key` makes),
# and standard base64 with its padding.
CALLER_KEY = "q4Lr0nTzEw9yP1xk-Vb7_3sUaH2mJcNd8fRgWiKoQe5"
HASHED_CALLER_KEY = "Zt8bX2nQw4Ls9vKe_1hYc-7pRm3uJdAf6gTiNo0aHyE"
PADDED_ADMIN_KEY = base64.b64encode(b"staff key of the ops desk").decode()
PADDED_PLUS_SLASH_KEY = "ab+c/d9Ef0Gh1Ij2Kl3Mn4Op5Qr6St7Uv8Wx9Yz0A=="
METRICS_TOKEN = "metrics-token-7f3a9c1e"


def hashed(name: str, key: str) -> str:
    return f"{name}=sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def listening_addresses(port: int) -> set[str]:
    """The local addresses of TCP sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, packed))
    return found


# --- binding ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_make_run_listens_on_loopback_only(tmp_path):
    port = free_port()
    run = Run(tmp_path, port)
    try:
        wait_for_health(run, f"http://127.0.0.1:{port}/health", time.monotonic() + READY_SECONDS)
        assert listening_addresses(port) == {"127.0.0.1"}
        assert f"Listening at: http://127.0.0.1:{port}" in run.output()
        run.interrupt()
        run.process.wait(STOP_SECONDS)
    finally:
        if run.process.poll() is None or run.pids():
            run.kill_everything()
        run.process.stdout.close()


def gunicorn_bind(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", "import runpy; print(runpy.run_path('gunicorn.conf.py')['bind'])"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return result.stdout.strip()


def test_gunicorn_binds_loopback_on_port_unless_gunicorn_bind_says_otherwise():
    assert gunicorn_bind({"PORT": "8123"}) == "127.0.0.1:8123"
    assert gunicorn_bind({}) == "127.0.0.1:8003"
    assert gunicorn_bind({"PORT": "8123", "GUNICORN_BIND": "0.0.0.0:9000"}) == "0.0.0.0:9000"


def test_the_image_listens_on_every_interface_of_its_container_on_port_8000():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "GUNICORN_BIND=0.0.0.0:8000" in dockerfile
    assert "PORT=8000" in dockerfile


# --- the simulator's control API ---------------------------------------------------------------


@pytest.fixture
def standalone(tmp_path):
    return simulator.create_app(server_key=SERVER_KEY, state_path=str(tmp_path / "sim.sqlite3"))


@pytest.fixture
def in_app(tmp_path):
    """Build the service with the in-app simulator mounted at /_simulator."""

    def build(**extra):
        return create_app(
            app_config(
                MIDTRANS_SIMULATOR_IN_APP=True,
                MIDTRANS_SIMULATOR_STATE=str(tmp_path / "in-app.sqlite3"),
                MIDTRANS_BASE_URL="http://127.0.0.1:9/_simulator",
                **extra,
            )
        )

    return build


def from_peer(address: str) -> dict[str, str]:
    return {"REMOTE_ADDR": address}


CONTROL_PATHS = [
    "/control/transactions",
    "/control/faults",
    "/control/calls",
    "/control/notifications",
]


@pytest.mark.parametrize("path", CONTROL_PATHS)
def test_the_standalone_simulator_control_api_answers_loopback_peers_only(standalone, path):
    client = standalone.test_client()
    for peer in ("10.1.2.3", "192.168.1.20", "2001:db8::7", "::ffff:10.0.0.9", "not-an-address"):
        response = client.get(path, environ_base=from_peer(peer))
        assert response.status_code == 403, peer
        assert "loopback" in response.get_json()["error"] and peer in response.get_json()["error"]
    for peer in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        assert client.get(path, environ_base=from_peer(peer)).status_code == 200, peer


def test_a_non_loopback_peer_may_use_snap_and_core_but_cannot_pay_through_control(standalone):
    client = standalone.test_client()
    auth = {"Authorization": "Basic " + base64.b64encode(f"{SERVER_KEY}:".encode()).decode()}
    body = {"transaction_details": {"order_id": "ORD-EXPOSE01", "gross_amount": 10_000}}
    elsewhere = from_peer("10.1.2.3")
    created = client.post("/snap/v1/transactions", json=body, headers=auth, environ_base=elsewhere)
    assert created.status_code == 201
    pay = client.post(
        "/control/transactions/ORD-EXPOSE01/pay",
        json={"method": "bca_va", "outcome": "settlement"},
        environ_base=elsewhere,
    )
    assert pay.status_code == 403
    status = client.get("/v2/ORD-EXPOSE01/status", headers=auth, environ_base=elsewhere)
    assert status.status_code == 200 and status.get_json()["status_code"] == "404"  # still unpaid
    with client.get("/snap/snap.js", environ_base=elsewhere) as script:
        assert script.status_code == 200


def test_the_in_app_simulator_control_api_refuses_a_non_loopback_peer(in_app):
    client = in_app().test_client()
    refused = client.get("/_simulator/control/transactions", environ_base=from_peer("10.1.2.3"))
    assert refused.status_code == 403 and "loopback" in refused.get_json()["error"]
    assert client.get("/_simulator/control/transactions").status_code == 200
    with client.get("/_simulator/snap/snap.js", environ_base=from_peer("10.1.2.3")) as script:
        assert script.status_code == 200


def test_the_in_app_control_api_refuses_a_client_forwarded_by_a_trusted_proxy(in_app):
    client = in_app(PROXY_FIX_HOPS=1).test_client()
    # The proxy runs on this machine; the client it forwards does not.
    through_proxy = client.get(
        "/_simulator/control/transactions",
        environ_base=from_peer("127.0.0.1"),
        headers={"X-Forwarded-For": "10.1.2.3"},
    )
    assert through_proxy.status_code == 403
    local = client.get(
        "/_simulator/control/transactions",
        environ_base=from_peer("127.0.0.1"),
        headers={"X-Forwarded-For": "127.0.0.1"},
    )
    assert local.status_code == 200


def test_the_control_api_refuses_a_forwarded_client_even_without_proxy_fix(in_app):
    # A proxy on this machine that nobody declared with PROXY_FIX_HOPS still says who it forwards.
    response = (
        in_app()
        .test_client()
        .get(
            "/_simulator/control/transactions",
            environ_base=from_peer("127.0.0.1"),
            headers={"X-Forwarded-For": "203.0.113.9, 127.0.0.1"},
        )
    )
    assert response.status_code == 403


# --- secrets in the logs and in X-Request-ID -------------------------------------------------


@pytest.fixture
def keyed(database):
    """The service with caller, staff and metrics keys configured."""
    return create_app(
        app_config(
            MIDTRANS_BASE_URL="http://127.0.0.1:9",
            API_KEYS=[f"gateway={CALLER_KEY}", hashed("ferries", HASHED_CALLER_KEY)],
            ADMIN_API_KEYS=[PADDED_ADMIN_KEY],
            METRICS_TOKEN=METRICS_TOKEN,
            API_AUTH_REQUIRED=True,
        )
    )


@pytest.mark.parametrize(
    "secret",
    [SERVER_KEY, "Mid-server-NotConfiguredAnywhere", CALLER_KEY, HASHED_CALLER_KEY, METRICS_TOKEN],
    ids=["server-key", "unconfigured-midtrans-key", "api-key", "hashed-api-key", "metrics-token"],
)
def test_a_secret_sent_as_request_id_is_replaced_never_echoed_nor_logged(keyed, log_text, secret):
    response = keyed.test_client().get("/payments/order/ORD-X", headers={"X-Request-ID": secret})
    assert response.status_code == 401  # logs "refused API call" with the request id
    echoed = response.headers["X-Request-ID"]
    assert echoed != secret and secret not in echoed and len(echoed) == 32
    text = log_text()
    assert "refused API call" in text and echoed in text
    assert secret not in text


def test_a_request_id_that_contains_a_secret_is_replaced(keyed):
    incoming = f"req-{CALLER_KEY[:20]}"
    assert (
        keyed.test_client()
        .get("/health", headers={"X-Request-ID": incoming})
        .headers["X-Request-ID"]
        == incoming
    )  # a piece of a key is no key
    carrying = f"req.{CALLER_KEY}"
    echoed = keyed.test_client().get("/health", headers={"X-Request-ID": carrying})
    assert echoed.headers["X-Request-ID"] != carrying


@pytest.mark.parametrize(
    "query",
    [
        f"api_key={CALLER_KEY}",
        f"page=2&token={CALLER_KEY}",
        f"access_token={CALLER_KEY}&page=2",
        f"signature_key={CALLER_KEY}",
        f"password={CALLER_KEY}",
        f"key={CALLER_KEY}",
    ],
)
def test_a_credential_in_a_logged_query_string_is_redacted_whatever_its_value(query):
    line = f'127.0.0.1 "GET /payments/order/ORD-X?monkey=banana&{query} HTTP/1.1" 401 93 2ms'
    cleaned = redact({"message": line})["message"]
    assert CALLER_KEY not in cleaned
    assert "/payments/order/ORD-X?monkey=banana&" in cleaned and "[redacted]" in cleaned
    assert ("page=2" in cleaned) == ("page=2" in query)


def test_a_configured_secret_is_redacted_wherever_it_appears_in_a_line(keyed, log_text):
    logging.getLogger("tiketq.test").warning(
        "got %s and %s in /payments/%s and %s",
        CALLER_KEY,
        METRICS_TOKEN,
        HASHED_CALLER_KEY,
        PADDED_ADMIN_KEY.replace("=", "%3D"),
    )
    text = log_text()
    for secret in (CALLER_KEY, METRICS_TOKEN, PADDED_ADMIN_KEY, PADDED_ADMIN_KEY.rstrip("=")):
        assert secret not in text
    # Only its hash is configured: a key nobody wrote down in plaintext cannot be looked for.
    assert HASHED_CALLER_KEY in text


@pytest.mark.parametrize(
    "setting",
    ["MIDTRANS_SERVER_KEY", "JWT_SECRET", "SECRET_KEY", "EVENT_SIGNING_SECRET", "METRICS_TOKEN"],
)
def test_every_configured_secret_setting_is_redacted_from_log_text(database, log_text, setting):
    secret = f"configured/{setting.lower()}+4e1d9a="
    create_app(app_config(MIDTRANS_BASE_URL="http://127.0.0.1:9", **{setting: secret}))
    in_url = quote(secret, safe="")
    logging.getLogger("tiketq.test").error(
        "value %s, in a URL %s %s", secret, in_url, in_url.lower()
    )
    text = log_text()
    assert secret not in text and in_url not in text and in_url.lower() not in text


def test_the_sentry_dsn_is_redacted_from_log_text(database, log_text, monkeypatch):
    # A self-hosted Sentry by address: nothing about it looks like an e-mail address.
    dsn = "https://f00dfeedcafe4242@10.0.0.5:9000/4567"
    monkeypatch.setattr(sentry_sdk, "init", lambda **_: None)  # no real Sentry client in tests
    create_app(app_config(MIDTRANS_BASE_URL="http://127.0.0.1:9", SENTRY_DSN=dsn))
    logging.getLogger("tiketq.test").error("sending to %s", dsn)
    assert "f00dfeedcafe4242" not in log_text()


def test_a_request_id_cannot_carry_a_configured_secret_into_the_logs_of_a_short_lived_app(
    database, log_text
):
    # JWT_SECRET shapes like a request id; it is learnt from the config, not from a pattern.
    secret = "jwt.secret.for-confirmations.2026"
    app = create_app(app_config(MIDTRANS_BASE_URL="http://127.0.0.1:9", JWT_SECRET=secret))
    response = app.test_client().get("/health", headers={"X-Request-ID": secret})
    assert response.headers["X-Request-ID"] != secret


# --- the real thing: gunicorn's access log and the app's lines, in one stdout -------------------


class Gunicorn(Served):
    """gunicorn serving wsgi:app with the repository's config, its stdout collected."""

    def __init__(self, tmp_path: Path, port: int, **env: str) -> None:
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_URL", "POSTGRES_", "MIDTRANS_", "GUNICORN_", "API_"))
        }
        environ.update(
            PORT=str(port),
            GUNICORN_BIND=f"127.0.0.1:{port}",
            GUNICORN_WORKERS="1",
            DATABASE_URL=f"sqlite:///{tmp_path / 'tiketq.sqlite3'}",
            MIDTRANS_SIMULATOR_STATE=str(tmp_path / "simulator.sqlite3"),
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
            SECRET_KEY="exposure-test-secret-key",
            **env,
        )
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        super().__init__([gunicorn, "--config", "gunicorn.conf.py", "wsgi:app"], environ)


@pytest.mark.slow
def test_gunicorn_logs_no_key_sent_as_request_id_or_in_a_query_string(tmp_path):
    port = free_port()
    server_key = "SB-Mid-server-ExposureTest42"
    server = Gunicorn(
        tmp_path,
        port,
        MIDTRANS_SIMULATOR="true",
        MIDTRANS_SERVER_KEY=server_key,
        API_KEYS=f"gateway={CALLER_KEY},{hashed('ferries', HASHED_CALLER_KEY)}",
        ADMIN_API_KEYS=PADDED_ADMIN_KEY,
        API_AUTH_REQUIRED="true",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_until_ready(f"{base}/health")
        answers = [
            requests.get(
                f"{base}/payments/order/ORD-X?api_key={key}&page=2",
                headers={"X-Request-ID": key},
                timeout=5,
            )
            for key in (CALLER_KEY, HASHED_CALLER_KEY, server_key)
        ]
        admin = requests.get(
            f"{base}/health?token={PADDED_ADMIN_KEY}",
            headers={"X-Request-ID": PADDED_ADMIN_KEY},
            timeout=5,
        )
    finally:
        output = server.stop()
    assert [answer.status_code for answer in answers] == [401, 401, 401] and admin.ok
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [
        r["message"]
        for r in records
        if r.get("logger") == "gunicorn.access" and "/payments/order/ORD-X" in r["message"]
    ]
    refused = [r for r in records if r.get("message") == "refused API call"]
    assert len(access) == 3 and len(refused) == 3, output
    assert all("?api_key=[redacted]&page=2" in line for line in access), output
    for answer in [*answers, admin]:
        assert answer.headers["X-Request-ID"] in output
    for secret in (CALLER_KEY, HASHED_CALLER_KEY, server_key, PADDED_ADMIN_KEY):
        assert secret not in output
        assert all(secret not in answer.headers["X-Request-ID"] for answer in answers)


# --- API key entries with "=" ----------------------------------------------------------------


@pytest.fixture
def staff_only(database):
    """Build the service with the given ADMIN_API_KEYS entries."""

    def build(*entries: str):
        app = create_app(
            app_config(MIDTRANS_BASE_URL="http://127.0.0.1:9", ADMIN_API_KEYS=list(entries))
        )
        return app.test_client()

    return build


def cancel_as(client, key: str) -> int:
    """The status of a staff-only call with `key`: 404 once let in (no such payment), else 401."""
    return client.post(
        "/payments/no-such-payment/cancel", headers={"Authorization": f"Bearer {key}"}
    ).status_code


@pytest.mark.parametrize("key", [PADDED_ADMIN_KEY, PADDED_PLUS_SLASH_KEY, "c2VjcmV0LWtleS0wMQ=="])
def test_a_bare_padded_base64_admin_key_authenticates_as_admin(staff_only, key):
    client = staff_only(key)
    assert cancel_as(client, key) == 404
    assert cancel_as(client, key.rstrip("=")) == 401


def test_a_named_admin_key_with_padding_authenticates_beside_the_other_entry_forms(staff_only):
    client = staff_only(
        f"ops={PADDED_ADMIN_KEY}",
        "desk.2=plain-staff-key-1",
        hashed("night:shift", "hashed-staff-key-2"),
        "bare-key-3",
    )
    for key in (PADDED_ADMIN_KEY, "plain-staff-key-1", "hashed-staff-key-2", "bare-key-3"):
        assert cancel_as(client, key) == 404, key
    assert cancel_as(client, f"ops={PADDED_ADMIN_KEY}") == 401
    assert cancel_as(client, "desk.2=plain-staff-key-1") == 401


def test_a_caller_key_with_padding_is_a_caller_key_not_a_staff_key(database):
    app = create_app(
        app_config(
            MIDTRANS_BASE_URL="http://127.0.0.1:9",
            API_KEYS=[PADDED_ADMIN_KEY],
            API_AUTH_REQUIRED=True,
        )
    )
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {PADDED_ADMIN_KEY}"}
    assert client.get("/payments/order/ORD-NONE", headers=bearer).status_code == 404
    assert cancel_as(client, PADDED_ADMIN_KEY) == 401
