"""The ops pages: staff login, the dashboard's numbers, search, payment history, resend."""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from werkzeug.security import generate_password_hash

from tests.support.config import CLIENT_KEY, SERVER_KEY
from tests.support.midtrans import notification
from tests.support.ops_day import NOW, notify, pay, seed, wib
from tests.support.pages import text_of
from tests.support.payments import NEVER_ISSUED_ID, poison
from tests.support.staff import PASSWORD, STAFF, csrf_token, log_in
from tiketq.config import ConfigError, from_environ, validate
from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.ops import accounts, charts, environment, limiter, views
from tiketq.ops.sessions import StaffSession
from tiketq.payments import heartbeats, notifications
from tiketq.payments.models import (
    Delivery,
    DeliveryStatus,
    Payment,
    Refund,
    WorkerHeartbeat,
    utcnow,
)
from tiketq.payments.notifications import receive_notification


@pytest.fixture(autouse=True)
def ops_app(app, monkeypatch):
    """The app with one member of staff, a fresh login rate limit, and the clock at NOW."""
    monkeypatch.setitem(app.config, "OPS_USERS", [STAFF])
    monkeypatch.setattr(views, "utcnow", lambda: NOW)
    limiter.reset()
    return app


# Seeding the day takes half a second or more: the tests that use it are marked slow.
@pytest.fixture
def seeded(client):
    return seed(NOW)


@pytest.fixture
def dashboard(client, seeded):
    log_in(client)
    response = client.get("/ops")
    assert response.status_code == 200
    return response.text


# Login, sessions, CSRF and the rate limit.


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/ops"),
        ("get", "/ops/"),
        ("get", "/ops/search?q=ORD-1"),
        ("get", f"/ops/payments/{NEVER_ISSUED_ID}"),
        ("post", "/ops/deliveries/1/resend"),
        ("post", "/ops/logout"),
    ],
)
def test_every_ops_page_sends_a_visitor_without_a_session_to_the_login(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/ops/login")


def test_the_login_remembers_the_page_asked_for_and_returns_to_it(client):
    wanted = client.get("/ops/search?q=ORD-1").headers["Location"]
    assert wanted == "/ops/login?next=/ops/search?q%3DORD-1"
    page = client.get(wanted).text
    assert 'name="next" type="hidden" value="/ops/search?q=ORD-1"' in page
    response = log_in(client, next="/ops/search?q=ORD-1")
    assert response.status_code == 303
    assert response.headers["Location"] == "/ops/search?q=ORD-1"


@pytest.mark.parametrize(
    "target", ["https://evil.example/ops", "//evil.example/ops", "/\\evil.example", "/checkout/x"]
)
def test_the_login_never_sends_staff_to_another_site(client, target):
    response = log_in(client, next=target)
    assert response.headers["Location"] == "/ops"


def test_the_right_password_opens_the_dashboard(client):
    response = log_in(client)
    assert response.status_code == 303
    page = client.get("/ops").text
    assert "Operations" in page and "alice" in page


@pytest.mark.parametrize(("name", "password"), [("alice", "wrong password"), ("mallory", PASSWORD)])
def test_a_wrong_name_or_password_is_refused_and_logged(client, caplog, name, password):
    with caplog.at_level(logging.WARNING):
        response = log_in(client, name=name, password=password)
    assert response.status_code == 401
    assert "Wrong name or password." in response.text
    assert client.get("/ops").status_code == 303
    assert "ops login refused" in caplog.text
    assert password not in caplog.text


def test_without_configured_staff_every_login_is_refused_and_the_log_says_why(
    client, app, monkeypatch, caplog
):
    monkeypatch.setitem(app.config, "OPS_USERS", [])
    with caplog.at_level(logging.WARNING):
        assert log_in(client).status_code == 401
    assert "no staff configured (set OPS_USERS)" in caplog.text


def test_the_sixth_attempt_in_a_minute_is_refused_with_429(client):
    for _ in range(5):
        assert log_in(client, password="guess").status_code == 401
    limited = log_in(client)
    assert limited.status_code == 429
    assert "Too many attempts" in limited.text
    assert int(limited.headers["Retry-After"]) > 0
    assert client.get("/ops").status_code == 303


def test_the_rate_limit_counts_per_account(client):
    for _ in range(5):
        log_in(client, name="mallory", password="guess")
    other = client.get("/ops/login", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    response = client.post(
        "/ops/login",
        data={"csrf_token": csrf_token(other.text), "name": "alice", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert response.status_code == 303


def test_successful_logins_do_not_use_up_the_rate_limit(client):
    for _ in range(7):
        assert log_in(client).status_code == 303


def test_the_webhook_and_the_api_are_never_rate_limited(client):
    for _ in range(5):
        log_in(client, password="guess")
    forged = notification("ORD-FORGED", "settlement")
    forged["signature_key"] = "0" * 128
    statuses = {client.post("/payments/webhook", json=forged).status_code for _ in range(12)}
    statuses |= {client.get("/payments/payment-ORD-NONE").status_code for _ in range(12)}
    assert 429 not in statuses


def test_a_login_without_a_csrf_token_is_refused(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    client.get("/ops/login")
    response = client.post("/ops/login", data={"name": "alice", "password": PASSWORD})
    assert response.status_code == 400
    assert "The form expired" in response.text
    assert client.get("/ops").status_code == 303


def test_a_csrf_token_from_another_session_is_refused(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    stranger = app.test_client()
    token = csrf_token(stranger.get("/ops/login").text)
    client.get("/ops/login")
    response = client.post(
        "/ops/login", data={"csrf_token": token, "name": "alice", "password": PASSWORD}
    )
    assert response.status_code == 400


def test_logout_needs_its_csrf_token_and_then_ends_the_session(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    log_in(client)
    assert client.post("/ops/logout").status_code == 400
    assert client.get("/ops").status_code == 200
    token = csrf_token(client.get("/ops").text)
    response = client.post("/ops/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert client.get("/ops").status_code == 303


def test_the_session_cookie_is_secure_httponly_and_samesite_lax(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "SESSION_COOKIE_SECURE", True)
    monkeypatch.setitem(app.config, "SESSION_COOKIE_NAME", "__Host-tiketq")
    token = csrf_token(client.get("/ops/login", base_url="https://localhost").text)
    response = client.post(
        "/ops/login",
        data={"csrf_token": token, "name": "alice", "password": PASSWORD},
        base_url="https://localhost",
    )
    assert response.status_code == 303
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-tiketq=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie
    assert "Domain=" not in cookie


def test_a_session_ends_after_the_configured_hours(client, app, monkeypatch):
    log_in(client)
    assert client.get("/ops").status_code == 200
    stored = db.session.scalars(sa.select(StaffSession)).one()
    stored.created_at -= timedelta(hours=app.config["OPS_SESSION_HOURS"], seconds=1)
    db.session.commit()
    assert client.get("/ops").status_code == 303


def test_a_changed_password_ends_the_sessions_it_began(client, app, monkeypatch):
    log_in(client)
    new = "alice:" + generate_password_hash("another long password", method="pbkdf2:sha256:1000")
    monkeypatch.setitem(app.config, "OPS_USERS", [new])
    assert client.get("/ops").status_code == 303


def test_the_ops_user_command_prints_an_entry_that_logs_in(client, app, monkeypatch):
    typed = f"{PASSWORD}\n{PASSWORD}\n"
    result = app.test_cli_runner().invoke(args=["payments", "ops-user", "bob"], input=typed)
    assert result.exit_code == 0, result.output
    entry = result.output.strip().splitlines()[-1]
    assert entry.startswith("bob:scrypt:") and PASSWORD not in result.output
    monkeypatch.setitem(app.config, "OPS_USERS", [STAFF, entry])
    assert log_in(client, name="bob").status_code == 303


def test_the_ops_user_command_refuses_a_short_password(app):
    result = app.test_cli_runner().invoke(
        args=["payments", "ops-user", "bob"], input="short\nshort\n"
    )
    assert result.exit_code != 0
    assert "at least 12 characters" in result.output


def test_ops_users_are_split_at_the_first_colon_only():
    hashed = generate_password_hash(PASSWORD)
    users = accounts.configured({"OPS_USERS": [f"carol:{hashed}"]})
    assert users["carol"].password_hash == hashed


@pytest.mark.parametrize("secret", ["hunter2-plain", "pa$$word", "md5$salt$hunter2"])
def test_a_malformed_ops_users_entry_stops_the_start_without_echoing_it(tmp_path, secret):
    env = {"OPS_USERS": f"{STAFF},dave:{secret}"}
    with pytest.raises(ConfigError) as refused:
        validate(from_environ(env, str(tmp_path)))
    assert "'dave'" in str(refused.value) and secret not in str(refused.value)


def test_the_ops_settings_have_defaults_and_are_checked(tmp_path):
    config = from_environ({}, str(tmp_path))
    assert config["OPS_USERS"] == []
    assert config["OPS_LOGIN_RATE"] == "5 per minute"
    assert config["OPS_STUCK_MINUTES"] == 30
    assert config["OPS_SESSION_HOURS"] == 8.0
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    with pytest.raises(ConfigError, match="OPS_LOGIN_RATE"):
        validate(from_environ({"OPS_LOGIN_RATE": "often"}, str(tmp_path)))


# The environment banner and the keys.


def test_the_banner_names_the_environment_on_every_page(client, app, monkeypatch):
    assert "<strong>SIMULATOR</strong>" in client.get("/ops/login").text
    monkeypatch.setitem(app.config, "MIDTRANS_SIMULATOR", False)
    assert "<strong>SANDBOX</strong>" in client.get("/ops/login").text
    monkeypatch.setitem(app.config, "MIDTRANS_IS_PRODUCTION", True)
    assert "<strong>PRODUCTION</strong>" in client.get("/ops/login").text


def test_keys_that_fit_the_mode_show_only_their_prefix(client):
    log_in(client)
    page = client.get("/ops").text
    assert "SB-Mid-server-…" in text_of(page, "key-MIDTRANS_SERVER_KEY")
    assert "fits SIMULATOR" in text_of(page, "key-MIDTRANS_SERVER_KEY")
    assert SERVER_KEY not in page and CLIENT_KEY not in page and "TESTKEY" not in page


def test_a_sandbox_key_in_production_is_a_warning(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "MIDTRANS_IS_PRODUCTION", True)
    monkeypatch.setitem(app.config, "MIDTRANS_SIMULATOR", False)
    log_in(client)
    page = client.get("/ops").text
    line = text_of(page, "key-MIDTRANS_SERVER_KEY")
    assert "sandbox key" in line and "production key expected in PRODUCTION" in line
    assert "TESTKEY" not in page


def test_key_checks_read_only_the_prefix():
    checks = environment.key_checks(
        {
            "MIDTRANS_IS_PRODUCTION": True,
            "MIDTRANS_SERVER_KEY": "Mid-server-abc",
            "MIDTRANS_CLIENT_KEY": "VT-client-abc",
        }
    )
    assert [(c.prefix, c.kind, c.ok) for c in checks] == [
        ("Mid-server-", "production", True),
        (None, None, False),
    ]


# The dashboard's widgets, on the seeded day.


@pytest.mark.slow
def test_today_counts_attempts_amounts_and_conversion(dashboard):
    assert text_of(dashboard, "today-count") == "10"
    assert text_of(dashboard, "today-amount") == "Rp 3.345.000"
    assert text_of(dashboard, "today-paid") == "3"
    # Paid (2 success + 1 refunded) of the 6 attempts that are neither pending nor processing.
    assert text_of(dashboard, "conversion") == "50.0 %"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("status", "count", "amount"),
    [
        ("success", "2", "Rp 400.000"),
        ("pending", "2", "Rp 500.000"),
        ("processing", "2", "Rp 1.450.000"),
        ("failed", "1", "Rp 500.000"),
        ("canceled", "1", "Rp 120.000"),
        ("expired", "1", "Rp 75.000"),
        ("refunded", "1", "Rp 300.000"),
    ],
)
def test_today_by_status(dashboard, status, count, amount):
    assert text_of(dashboard, f"status-{status}-count") == count
    assert text_of(dashboard, f"status-{status}-amount") == amount


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "count", "paid", "amount"),
    [
        ("bank_transfer", "5", "1", "Rp 150.000"),
        ("gopay", "2", "2", "Rp 550.000"),
        ("credit_card", "2", "0", "Rp 0"),
        ("none", "1", "0", "Rp 0"),
    ],
)
def test_today_by_method(dashboard, method, count, paid, amount):
    assert text_of(dashboard, f"method-{method}-count") == count
    assert text_of(dashboard, f"method-{method}-paid") == paid
    assert text_of(dashboard, f"method-{method}-amount") == amount


@pytest.mark.slow
def test_the_hourly_chart_is_an_svg_with_words_for_every_bar(dashboard):
    svg = re.search(r"<svg .*?</svg>", dashboard, re.S).group(0)
    assert '<title id="hourly-chart-title">Payments per hour today by status (WIB)</title>' in svg
    assert "10 payments in all; the busiest hour is 14:00 with 5." in svg
    assert "<title>14:00: 5 (2 processing, 2 pending, 1 failed)</title>" in svg
    assert "<title>08:00: 1 (1 expired)</title>" in svg
    assert "<title>09:00: 1 (1 success)</title>" in svg
    assert svg.count('class="status-') == 8
    assert "<script" not in dashboard and "style=" not in dashboard


@pytest.mark.slow
def test_stuck_lists_open_payments_older_than_the_threshold(dashboard, seeded):
    assert text_of(dashboard, "stuck-count") == "3"
    stuck = re.search(r'id="stuck".*?</section>', dashboard, re.S).group(0)
    for label in ("D", "G", "L"):
        assert seeded[label].order_id in stuck
    for label in ("C", "I"):
        assert seeded[label].order_id not in stuck
    assert "overdue" in stuck


@pytest.mark.slow
def test_stuck_follows_the_configured_minutes(client, app, seeded, monkeypatch):
    monkeypatch.setitem(app.config, "OPS_STUCK_MINUTES", 5)
    log_in(client)
    assert text_of(client.get("/ops").text, "stuck-count") == "4"


@pytest.mark.slow
def test_needs_review_counts_each_reason(dashboard, seeded):
    assert text_of(dashboard, "review-count") == "4"
    for reason in ("amount_mismatch", "fraud_challenge", "paid_after_cancel", "paid_after_expiry"):
        assert text_of(dashboard, f"review-{reason}") == "1"
    assert text_of(dashboard, "review-chargeback") == "0"
    review = re.search(r'id="review".*?</section>', dashboard, re.S).group(0)
    for label in ("G", "I", "J", "K"):
        assert seeded[label].order_id in review


@pytest.mark.slow
def test_notifications_not_applied_are_counted_for_today_and_the_latest_listed(dashboard):
    assert text_of(dashboard, "rejected-title") == "Notifications not applied"
    assert text_of(dashboard, "rejected-bad_signature") == "2"
    assert text_of(dashboard, "rejected-unknown_order") == "1"
    for outcome in ("status_mismatch", "malformed", "failed"):
        assert text_of(dashboard, f"rejected-{outcome}") == "0"
    rejected = re.search(r'id="rejected".*?</section>', dashboard, re.S).group(0)
    assert rejected.count("ORD-FORGED") == 3 and "ORD-NOBODY" in rejected
    assert "no payment has this order id yet" in rejected


@pytest.mark.slow
def test_a_notification_that_failed_to_apply_shows_its_error_and_tries(client, seeded, monkeypatch):
    payment = seeded["C"]
    poison(monkeypatch, notifications, "apply_answer", payment)
    pay(payment, "bca_va", "settlement", wib(14, 57))
    # Its retry, after the backoff, raises again.
    notifications.apply_waiting(current_gateway(), now=wib(14, 58))

    log_in(client)
    page = client.get("/ops").text
    assert text_of(page, "rejected-failed") == "1"
    rejected = re.search(r'id="rejected".*?</section>', page, re.S).group(0)
    [row] = [r for r in re.findall(r"<tr><td>.*?</tr>", rejected, re.S) if payment.order_id in r]
    assert ">failed<" in row and "ValueError: poison" in row and "(2 tries)" in row
    assert db.session.get(Payment, payment.id).status == "pending"


@pytest.mark.slow
def test_the_outbox_backlog_and_its_dead_letters(dashboard, seeded):
    assert text_of(dashboard, "backlog-undispatched") == "3"
    assert text_of(dashboard, "backlog-pending") == "2"
    assert text_of(dashboard, "backlog-failing") == "1"
    assert text_of(dashboard, "backlog-dead") == "1"
    assert text_of(dashboard, "backlog-oldest") == "20 min"
    dead = db.session.scalar(sa.select(Delivery).where(Delivery.status == DeliveryStatus.DEAD))
    row = re.search(rf'id="delivery-{dead.id}".*?</tr>', dashboard, re.S).group(0)
    assert seeded["A"].order_id in row and "HTTP 500" in row
    assert f'action="/ops/deliveries/{dead.id}/resend"' in row


@pytest.mark.slow
def test_workers_and_the_last_reconcile(dashboard):
    worker = re.search(r'id="worker".*?</section>', dashboard, re.S).group(0)
    alive, silent = worker.index("worker-a:101"), worker.index("worker-old:7")
    assert "alive" in worker[alive:silent] and "silent" in worker[silent:]
    assert "applied 0, delivered 4, dispatched 2, expired 1, reconciled 3" in worker
    assert text_of(dashboard, "reconcile-changed") == "2026-03-14 14:40:00 WIB"
    # The inbox job asks Midtrans too: I's notification, applied at 14:52, is the latest ask.
    assert text_of(dashboard, "reconcile-checked") == "2026-03-14 14:52:00 WIB"


def test_an_empty_database_shows_zeros_and_no_worker(client):
    log_in(client)
    page = client.get("/ops").text
    assert text_of(page, "today-count") == "0"
    assert text_of(page, "conversion") == "—"
    assert text_of(page, "stuck-count") == "0"
    assert "No worker has reported yet." in page
    assert "No payments yet." in page


# Search and the payment's page.


@pytest.mark.slow
def test_a_search_with_one_hit_opens_the_payment(client, seeded):
    log_in(client)
    payment = seeded["H"]
    for text in (payment.order_id, payment.gateway_order_id, str(payment.id), f" {payment.id} "):
        response = client.get("/ops/search", query_string={"q": text})
        assert response.status_code == 303
        assert response.headers["Location"] == f"/ops/payments/{payment.id}"


@pytest.mark.slow
def test_a_search_for_an_order_with_several_attempts_lists_them(client, seeded):
    retry = Payment(
        order_id=seeded["E"].order_id,
        attempt=2,
        gateway_order_id=seeded["E"].order_id + "-2",
        amount=75_000,
        expires_at=wib(20, 0),
        request_fingerprint="seeded",
        created_at=wib(14, 58),
    )
    db.session.add(retry)
    db.session.commit()
    log_in(client)
    response = client.get("/ops/search", query_string={"q": seeded["E"].order_id})
    assert response.status_code == 200
    results = re.search(r'id="results".*?</table>', response.text, re.S).group(0)
    assert results.count("<tr>") == 3
    assert retry.gateway_order_id in results


@pytest.mark.slow
@pytest.mark.parametrize("text", ["ORD-UNKNOWN", "' OR 1=1--", "x'; DROP TABLE payments;--"])
def test_a_search_without_hits_says_so(client, seeded, text):
    log_in(client)
    response = client.get("/ops/search", query_string={"q": text})
    assert response.status_code == 200
    assert "No payment has that order id" in response.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 12


@pytest.mark.slow
def test_the_payment_page_shows_the_full_history_with_links_to_notifications(client, seeded):
    log_in(client)
    payment = seeded["H"]
    page = client.get(f"/ops/payments/{payment.id}").text
    history = re.search(r'id="history".*?</section>', page, re.S).group(0)
    events = re.findall(r'<tr class="event">.*?</tr>', history, re.S)
    assert len(events) == 3
    assert [re.search(r'badge status-(\w+)">', event).group(1) for event in events] == [
        "pending",
        "success",
        "refunded",
    ]
    notification_ids = re.findall(r'href="#notification-(\d+)"', history)
    assert len(notification_ids) == 2
    for number in notification_ids:
        assert f'id="notification-{number}"' in page
    assert "settlement" in page and "refund" in page
    assert "<details>" in page and "Raw body" in page
    assert text_of(page, "amount") == "Rp 300.000"


@pytest.mark.slow
def test_the_payment_page_shows_refunds_messages_deliveries_and_a_resend_for_dead_ones(
    client, seeded
):
    payment = seeded["A"]
    db.session.add(
        Refund(payment_id=payment.id, refund_key="r-1", amount=50_000, reason="customer asked")
    )
    db.session.commit()
    log_in(client)
    page = client.get(f"/ops/payments/{payment.id}").text
    refunds = re.search(r'id="refunds".*?</section>', page, re.S).group(0)
    assert "Rp 50.000" in refunds and "customer asked" in refunds
    messages = re.search(r'id="messages".*?</section>', page, re.S).group(0)
    assert "payment.succeeded" in messages
    assert "transaction-service" in messages and "user-service" in messages
    assert messages.count(">Resend</button>") == 1


@pytest.mark.slow
def test_the_payment_page_shows_notifications_refused_before_they_were_matched(client, seeded):
    payment = seeded["C"]
    forged = notification(payment.gateway_order_id, "settlement", "100000.00")
    forged["signature_key"] = "f" * 128
    receive_notification(json.dumps(forged).encode(), gateway=current_gateway(), now=wib(14, 56))
    log_in(client)
    page = client.get(f"/ops/payments/{payment.id}").text
    notifications = re.search(r'id="notifications".*?</section>', page, re.S).group(0)
    assert "bad_signature" in notifications and "invalid" in notifications


@pytest.mark.slow
def test_hostile_text_in_a_notification_is_escaped(client, seeded):
    payment = seeded["C"]
    hostile = "</pre><script>alert(1)</script><img src=x onerror=alert(2)>"
    pay(payment, "bca_va", "pending", wib(14, 57), custom_field1=hostile)
    # Signed, for an order nobody has: listed as not applied, its order id shown.
    notify(notification("<img src=x onerror=alert(3)>", "settlement"), wib(14, 58))
    log_in(client)
    for page in (client.get(f"/ops/payments/{payment.id}").text, client.get("/ops").text):
        assert "<script>alert" not in page and "<img src=x" not in page
    page = client.get(f"/ops/payments/{payment.id}").text
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("payment_id", [NEVER_ISSUED_ID, "not-a-uuid", "payment-ORD-1"])
def test_an_unknown_payment_is_a_404_page(client, payment_id):
    log_in(client)
    response = client.get(f"/ops/payments/{payment_id}")
    assert response.status_code == 404
    assert "There is no such payment." in response.text


def test_ops_pages_carry_the_html_security_headers(client):
    log_in(client)
    response = client.get("/ops")
    assert "script-src 'self' 'nonce-" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"


# Resend.


@pytest.mark.slow
def test_resend_queues_a_dead_letter_again(client, seeded):
    dead = db.session.scalar(sa.select(Delivery).where(Delivery.status == DeliveryStatus.DEAD))
    log_in(client)
    token = csrf_token(client.get("/ops").text)
    response = client.post(
        f"/ops/deliveries/{dead.id}/resend", data={"csrf_token": token, "next": "/ops#outbox"}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/ops#outbox"
    db.session.expire_all()
    queued = db.session.get(Delivery, dead.id)
    assert queued.status == DeliveryStatus.PENDING
    assert queued.next_attempt_at <= datetime.now(UTC)
    page = client.get("/ops").text
    assert f"Delivery {dead.id} to transaction-service is queued" in page
    assert text_of(page, "backlog-dead") == "0"


@pytest.mark.slow
def test_resend_without_a_csrf_token_changes_nothing(client, app, seeded, monkeypatch):
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    dead = db.session.scalar(sa.select(Delivery).where(Delivery.status == DeliveryStatus.DEAD))
    log_in(client)
    assert client.post(f"/ops/deliveries/{dead.id}/resend").status_code == 400
    db.session.expire_all()
    assert db.session.get(Delivery, dead.id).status == DeliveryStatus.DEAD


def test_resend_of_an_unknown_delivery_is_a_404(client):
    log_in(client)
    token = csrf_token(client.get("/ops").text)
    response = client.post("/ops/deliveries/987654321/resend", data={"csrf_token": token})
    assert response.status_code == 404


# The heartbeat the worker leaves, and the chart's layout.


def test_a_heartbeat_keeps_its_start_and_moves_its_beat(client):
    heartbeats.record_heartbeat("host:1", {"reconciled": 1}, now=wib(14, 0))
    heartbeats.record_heartbeat("host:1", {"reconciled": 2}, now=wib(14, 1))
    beat = db.session.get(WorkerHeartbeat, "host:1")
    assert (beat.started_at, beat.beat_at) == (wib(14, 0), wib(14, 1))
    assert beat.last_round == {"reconciled": 2}


def test_the_worker_reports_a_heartbeat_after_each_round(app, client, monkeypatch):
    monkeypatch.setattr(views, "utcnow", utcnow)
    result = app.test_cli_runner().invoke(args=["payments", "worker", "--once"])
    assert result.exit_code == 0, result.output
    beat = db.session.scalar(sa.select(WorkerHeartbeat))
    assert beat.worker_id.endswith(f":{os.getpid()}")
    assert set(beat.last_round) == {
        "applied",
        "reconciled",
        "expired",
        "dispatched",
        "delivered",
        "purged",
    }
    log_in(client)
    assert "alive" in re.search(r'id="worker".*?</section>', client.get("/ops").text, re.S).group(0)


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (11, 20), (480, 500)]
)
def test_the_chart_scale_ends_on_a_round_number(value, ceiling):
    assert charts.nice_ceiling(value) == ceiling


def test_stacked_bars_are_as_tall_as_their_counts():
    chart = charts.stacked_bars(
        "t",
        ["a", "b"],
        {(0, "success"): 3, (0, "failed"): 1, (1, "failed"): 2},
        ["success", "failed"],
    )
    first, second = chart.bars
    assert [s.status for s in first.segments] == ["success", "failed"]
    assert first.segments[0].height == pytest.approx(3 * second.segments[0].height / 2)
    assert first.segments[0].y + first.segments[0].height == pytest.approx(chart.baseline)
    assert first.segments[1].y + first.segments[1].height == pytest.approx(first.segments[0].y)
    assert [tick.value for tick in chart.ticks] == [0, 1, 2, 3, 4, 5]
