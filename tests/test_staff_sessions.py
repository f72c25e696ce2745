"""Staff sessions end on the server; refused ops logins are limited per account and per address."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import requests
import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from tests.support.processes import READY_SECONDS, Served, free_port
from tests.support.staff import PASSWORD, STAFF, csrf_token, log_in
from tiketq.extensions import db
from tiketq.ops import accounts, limiter
from tiketq.ops.sessions import StaffSession
from tiketq.payments.models import utcnow

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NEW_STAFF = "alice:" + generate_password_hash("another long password", method="pbkdf2:sha256:1000")


@pytest.fixture(autouse=True)
def staff_app(app, monkeypatch):
    """The app with one member of staff and a fresh login limit."""
    monkeypatch.setitem(app.config, "OPS_USERS", [STAFF])
    limiter.reset()
    return app


def stored_session() -> StaffSession:
    """The only staff session in the database, as it is stored now."""
    db.session.expire_all()
    return db.session.scalars(sa.select(StaffSession)).one()


def move_back(field: str, by: timedelta) -> None:
    """Move a stored time of the staff session into the past, as if that much time had passed."""
    stored = stored_session()
    setattr(stored, field, getattr(stored, field) - by)
    db.session.commit()


def log_in_from(client, address: str, name: str = "alice", password: str = PASSWORD):
    """A login from this client address (REMOTE_ADDR)."""
    page = client.get("/ops/login", environ_base={"REMOTE_ADDR": address})
    return client.post(
        "/ops/login",
        data={"csrf_token": csrf_token(page.text), "name": name, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


# Sessions end on the server.


def test_an_ops_cookie_replayed_after_sign_out_is_sent_to_the_login_page(app, client):
    log_in(client)
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    copied = client.get_cookie(cookie_name).value
    page = client.get("/ops")
    assert page.status_code == 200

    client.post("/ops/logout", data={"csrf_token": csrf_token(page.text)})

    replay = app.test_client()
    replay.set_cookie(cookie_name, copied)
    response = replay.get("/ops")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/ops/login")
    assert stored_session().ended_at is not None


def test_the_database_keeps_only_a_hash_of_the_token_the_cookie_holds(client):
    log_in(client)
    with client.session_transaction() as session:
        token = session[accounts.SESSION_KEY]
    stored = stored_session()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {str(value) for value in vars(stored).values()}
    assert stored.staff_name == "alice" and stored.ended_at is None


def test_a_session_idle_longer_than_ops_idle_minutes_is_over(app, client):
    log_in(client)
    assert client.get("/ops").status_code == 200

    idle = timedelta(minutes=app.config["OPS_IDLE_MINUTES"])
    move_back("last_seen_at", idle + timedelta(seconds=1))

    response = client.get("/ops")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/ops/login")
    assert stored_session().ended_at is not None


def test_a_session_in_use_stays_open_and_its_use_is_written_at_most_once_a_minute(app, client):
    log_in(client)
    idle = timedelta(minutes=app.config["OPS_IDLE_MINUTES"])
    move_back("last_seen_at", idle - timedelta(seconds=5))

    assert client.get("/ops").status_code == 200
    seen = stored_session().last_seen_at
    assert utcnow() - seen < timedelta(seconds=5)

    assert client.get("/ops").status_code == 200
    assert stored_session().last_seen_at == seen


def test_a_changed_password_ends_the_sessions_it_began_even_once_it_is_changed_back(
    app, client, monkeypatch
):
    log_in(client)
    copy = app.test_client()
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    copy.set_cookie(cookie_name, client.get_cookie(cookie_name).value)

    monkeypatch.setitem(app.config, "OPS_USERS", [NEW_STAFF])
    assert client.get("/ops").status_code == 303
    # An old copy of the configuration comes back: the session stays over all the same.
    monkeypatch.setitem(app.config, "OPS_USERS", [STAFF])
    assert copy.get("/ops").status_code == 303
    assert stored_session().ended_at is not None


# Refused logins are limited per account and per address.


def test_a_limited_account_answers_right_and_wrong_passwords_alike_with_retry_after(client):
    # Each try comes from another address: the account's limit holds wherever they come from.
    for attempt in range(5):
        assert log_in_from(client, f"10.0.0.{attempt}", password="guess").status_code == 401

    wrong = log_in_from(client, "10.0.1.1", password="another guess")
    right = log_in_from(client, "10.0.1.2")

    assert (wrong.status_code, wrong.text) == (right.status_code, right.text)
    assert wrong.status_code == 429 and "Too many attempts" in wrong.text
    assert int(wrong.headers["Retry-After"]) > 0 and int(right.headers["Retry-After"]) > 0
    assert client.get("/ops").status_code == 303


def test_the_right_password_works_elsewhere_while_an_attacker_address_is_limited(
    app, client, monkeypatch
):
    monkeypatch.setitem(app.config, "OPS_LOGIN_ADDRESS_RATE", "8 per minute")
    attacker = "10.6.6.6"
    # One guess per name stays under each account's limit; the address's own limit stops it.
    for attempt in range(8):
        assert log_in_from(client, attacker, name=f"staff{attempt}").status_code == 401
    assert log_in_from(client, attacker, name="staff9").status_code == 429
    assert log_in_from(client, attacker).status_code == 429

    assert log_in_from(client, "10.1.1.1").status_code == 303


# Every gunicorn worker counts in the same store.

WORKERS = 3
LOGIN_RATE = 5
# The pid of the worker that answered and the request id it echoed, to tell workers apart.
ACCESS_LOG_FORMAT = "%(p)s %({x-request-id}o)s"


class Gunicorn(Served):
    """gunicorn in a process group of its own, its access log read as it comes."""

    def __init__(self, env: dict[str, str], app: str) -> None:
        command = [
            str(Path(sys.executable).with_name("gunicorn")),
            *("--config", "gunicorn.conf.py", "--access-logformat", ACCESS_LOG_FORMAT),
            # Idle connections stay with their worker for the whole test.
            *("--keep-alive", str(READY_SECONDS)),
            app,
        ]
        self.answered_by: dict[str, int] = {}
        self.logged = threading.Condition()
        super().__init__(command, env, on_line=self._note_access)

    def _note_access(self, line: str) -> None:
        with self.logged:
            record = json.loads(line) if line.startswith("{") else {}
            if record.get("logger") == "gunicorn.access":
                pid, request_id = record["message"].split()
                self.answered_by[request_id] = int(pid.strip("<>"))
            self.logged.notify_all()

    def worker_of(self, response: requests.Response, deadline: float) -> int:
        """The pid of the worker that answered, from the access log (written after the answer)."""
        request_id = response.headers["X-Request-ID"]
        with self.logged:
            while request_id not in self.answered_by:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no access log line for {request_id}:\n{self.output()}"
                self.logged.wait(remaining)
            return self.answered_by[request_id]


@pytest.fixture
def gunicorn(database: str, tmp_path: Path) -> Iterator[tuple[str, Gunicorn, str]]:
    """Three gunicorn workers counting logins in Redis under a key prefix of this test's own."""
    prefix = f"tiketq-test-{uuid.uuid4().hex}"
    name = f"staff-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "GUNICORN_WORKERS": str(WORKERS),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "DATABASE_URL": database,
        "SECRET_KEY": "the-same-in-every-worker",
        "MIDTRANS_SIMULATOR_STATE": str(tmp_path / "simulator.sqlite3"),
        "OPS_USERS": accounts.user_entry(name, PASSWORD),
        "OPS_LOGIN_RATE": f"{LOGIN_RATE} per hour",
        "RATELIMIT_STORAGE_URI": TEST_REDIS_URL,
        # The test is a proxy in front of many clients: each try comes from an address of its own.
        "PROXY_FIX_HOPS": "1",
    }
    # The factory takes the prefix that keeps parallel test runs' counters apart.
    server = Gunicorn(env, f"tiketq:create_app({{'RATELIMIT_KEY_PREFIX': {prefix!r}}})")
    try:
        url = f"http://127.0.0.1:{port}"
        server.wait_until_ready(f"{url}/health")
        yield url, server, name
    finally:
        server.stop()
        store = redis.Redis.from_url(TEST_REDIS_URL)
        for key in store.scan_iter(match=f"*{prefix}*"):
            store.delete(key)
        store.close()


def one_client_per_worker(url: str, server: Gunicorn, deadline: float) -> list[requests.Session]:
    """Keep-alive clients on fresh connections until every worker holds one of them."""
    clients: dict[int, requests.Session] = {}
    while len(clients) < WORKERS:
        assert time.monotonic() < deadline, f"only {len(clients)} workers answered"
        client = requests.Session()
        worker = server.worker_of(client.get(f"{url}/health", timeout=10), deadline)
        if worker in clients:
            client.close()
        else:
            clients[worker] = client
    return list(clients.values())


def try_login(url: str, client: requests.Session, name: str, password: str, attempt: int):
    """One login from an address of its own, its CSRF token fetched on the same connection."""
    forwarded = {"X-Forwarded-For": f"10.20.{attempt // 250}.{attempt % 250 + 1}"}
    page = client.get(f"{url}/ops/login", headers=forwarded, timeout=10)
    return client.post(
        f"{url}/ops/login",
        data={"csrf_token": csrf_token(page.text), "name": name, "password": password},
        headers=forwarded,
        allow_redirects=False,
        timeout=10,
    )


@pytest.mark.slow
def test_three_gunicorn_workers_share_one_login_limit_in_redis(gunicorn):
    url, server, name = gunicorn
    deadline = time.monotonic() + READY_SECONDS
    clients = one_client_per_worker(url, server, deadline)
    try:
        refused = [
            try_login(url, clients[attempt % WORKERS], name, "wrong password", attempt)
            for attempt in range(LOGIN_RATE)
        ]
        assert [response.status_code for response in refused] == [401] * LOGIN_RATE
        assert len({server.worker_of(response, deadline) for response in refused}) == WORKERS

        wrong = try_login(url, clients[LOGIN_RATE % WORKERS], name, "wrong password", LOGIN_RATE)
        right = try_login(url, clients[(LOGIN_RATE + 1) % WORKERS], name, PASSWORD, LOGIN_RATE + 1)
    finally:
        for client in clients:
            client.close()

    assert wrong.status_code == 429, server.output()
    assert (right.status_code, right.text) == (wrong.status_code, wrong.text)
    assert int(wrong.headers["Retry-After"]) > 0 and int(right.headers["Retry-After"]) > 0


@pytest.mark.slow
def test_logins_racing_on_three_workers_check_no_more_passwords_than_the_limit(gunicorn):
    url, _, name = gunicorn
    racers = 4 * WORKERS
    start = threading.Barrier(racers)

    def race(attempt: int) -> int:
        with requests.Session() as client:
            forwarded = {"X-Forwarded-For": f"10.30.0.{attempt + 1}"}
            token = csrf_token(client.get(f"{url}/ops/login", headers=forwarded, timeout=10).text)
            start.wait(READY_SECONDS)
            return client.post(
                f"{url}/ops/login",
                data={"csrf_token": token, "name": name, "password": "wrong password"},
                headers=forwarded,
                timeout=30,
            ).status_code

    with ThreadPoolExecutor(racers) as pool:
        statuses = sorted(pool.map(race, range(racers)))

    assert statuses == [401] * LOGIN_RATE + [429] * (racers - LOGIN_RATE)
