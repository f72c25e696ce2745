"""The traveller's checkout and receipt pages, through the Flask test client."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from markupsafe import escape

from tests.support.config import SERVER_KEY
from tests.support.payments import NEVER_ISSUED_ID
from tiketq.checkout.display import first_word, mask_email, mask_phone
from tiketq.config import ConfigError, from_environ, instance_secret_key, snap_js_url, validate
from tiketq.extensions import db
from tiketq.formats import rupiah
from tiketq.payments.models import Payment, utcnow
from tiketq.payments.status import PaymentStatus

TEMPLATES = Path(__file__).resolve().parent.parent / "tiketq" / "templates"
SARI = {"first_name": "Sari Dewi", "email": "sari@example.co.id", "phone": "+62 812 3456 7890"}
HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg/onload=alert(1)>',
    "</script><script>alert(1)</script>",
]


def open_payment(client, order_id: str, *, customer=SARI, **fields) -> dict:
    body = {
        "order_id": order_id,
        "amount": 1_250_000,
        "customer_details": customer,
        "item_details": [
            {"id": "CGK-DPS", "name": "CGK - DPS GA-404", "price": 1_200_000, "quantity": 1},
            {"id": "BAG", "name": "Baggage 20 kg", "price": 25_000, "quantity": 2},
        ],
        **fields,
    }
    response = client.post("/payments", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def stored(payment_id: str) -> Payment:
    return db.session.get(Payment, uuid.UUID(payment_id))


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, "the page has no CSRF token"
    return match.group(1)


def own_csrf_token(client, order_id: str) -> str:
    """A valid token of the client's own session: from the retry form of its own lapsed payment."""
    own = open_payment(client, f"{order_id}-OWN")
    stored(own["id"]).expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    return csrf_token(client.get(f"/checkout/{own['id']}").get_data(as_text=True))


def csp(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_payment_url_is_the_absolute_checkout_page(client, order_id):
    payment = open_payment(client, order_id)
    assert payment["payment_url"] == f"http://localhost/checkout/{payment['id']}"
    assert client.get(payment["payment_url"]).status_code == 200


def test_snap_is_told_to_send_the_traveller_back_to_the_finish_page(
    client, order_id, midtrans_simulator
):
    payment = open_payment(client, order_id)
    callbacks = midtrans_simulator.transaction(order_id)["request"]["callbacks"]
    finish = f"http://localhost/checkout/{payment['id']}/finish"
    assert callbacks == {"finish": finish, "error": finish}


def test_the_checkout_page_shows_the_order_in_rupiah_with_the_time_left(client, order_id):
    payment = open_payment(client, order_id)
    page = client.get(f"/checkout/{payment['id']}").get_data(as_text=True)
    assert "Rp 1.250.000" in page and "Rp 1.200.000" in page and "2 × Rp 25.000" in page
    assert "CGK - DPS GA-404" in page and order_id in page
    seconds = int(re.search(r'data-seconds-left="(\d+)"', page).group(1))
    assert 3590 <= seconds <= 3600 and "Sisa waktu" in page
    assert re.search(
        r"Bayar sebelum</dt>\s*<dd><time [^>]+>\d{1,2} \w+ \d{4}, \d\d\.\d\d WIB<", page
    )


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "Rp 0"),
        (999, "Rp 999"),
        (1_000, "Rp 1.000"),
        (1_250_000, "Rp 1.250.000"),
        (-25_000, "-Rp 25.000"),
    ],
)
def test_rupiah_are_written_with_dots_between_thousands(amount, text):
    assert rupiah(amount) == text


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_customer_text_is_escaped_on_both_pages(client, order_id, name):
    payment = open_payment(
        client,
        order_id,
        customer={**SARI, "first_name": name},
        description=f"Trip for {name}",
        item_details=[{"id": "X", "name": name[:50], "price": 1_250_000, "quantity": 1}],
    )
    for path in (f"/checkout/{payment['id']}", f"/receipt/{payment['id']}"):
        page = client.get(path).get_data(as_text=True)
        assert name not in page
        # The pages show the name's first word, escaped like every other text.
        assert f'id="customer-name">{escape(first_word(name))}<' in page and "&lt;" in page
        # Every script on the page is one of ours: an external file with the request's nonce.
        assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", page))


def test_every_template_is_autoescaped_by_its_name():
    names = [p.name for p in TEMPLATES.rglob("*") if p.is_file()]
    assert names and all(name.endswith(".html") for name in names)


@pytest.mark.parametrize(
    ("email", "shown"),
    [
        ("rani@example.com", "r***@example.com"),
        ("sari@example.co.id", "s***@example.co.id"),
        ("a@b.id", "a***@b.id"),
        ("first.last+tag@mail.example.com", "f***@mail.example.com"),
        ("odd@name@example.com", "o***@example.com"),
        ("no-at-sign", "***"),
        ("@example.com", "***"),
        ("", "***"),
    ],
)
def test_an_email_shows_its_first_character_and_domain(email, shown):
    assert mask_email(email) == shown


@pytest.mark.parametrize(
    ("phone", "shown"),
    [
        ("+62 812 3456 7890", "+62 812 **** 7890"),
        ("+62 812-3456-7890", "+62 812 **** 7890"),
        ("+62 (812) 3456-7890", "+62 812 **** 7890"),
        ("081234567890", "+62 812 **** 7890"),
        ("0812 3456 7890", "+62 812 **** 7890"),
        ("6281234567890", "+62 812 **** 7890"),
        ("+62 812 3456 78901", "+62 812 **** 8901"),
        # Fewer than 4 digits would stay hidden behind the first 3 and last 4: show 2.
        ("+62811000000", "+62 **** 00"),
        ("0812345678", "+62 **** 78"),
        ("+62 21 1234 5678", "+62 **** 78"),
        # Another country's code has no fixed length, so it is hidden with the rest.
        ("+1 415 555 0100", "**** 00"),
        ("0062 812 3456 7890", "**** 90"),
        ("123456", "**** 56"),
        ("12345", "****"),
        ("+62 81", "****"),
        ("", "****"),
    ],
)
def test_a_phone_number_shows_its_country_code_operator_and_last_digits(phone, shown):
    assert mask_phone(phone) == shown


@pytest.mark.parametrize(
    ("name", "shown"),
    [("Sari Dewi", "Sari"), ("  Budi  ", "Budi"), ("Sukarno", "Sukarno"), ("", ""), (None, "")],
)
def test_a_name_shows_its_first_word(name, shown):
    assert first_word(name) == shown


def test_both_pages_show_the_travellers_details_masked(client, order_id):
    payment = open_payment(client, order_id)
    for path in (f"/checkout/{payment['id']}", f"/receipt/{payment['id']}"):
        page = client.get(path).get_data(as_text=True)
        assert 'id="customer-name">Sari<' in page, path
        assert 'id="customer-email">s***@example.co.id<' in page, path
        assert 'id="customer-phone">+62 812 **** 7890<' in page, path
        assert "Dewi" not in page and "sari@" not in page, path
        # Long enough that no id, token or nonce on the page holds them by chance.
        assert all(part not in page for part in ("812 3456", "3456 7890", "34567890")), path


def test_a_missing_detail_is_left_out_not_shown_empty(client, order_id):
    payment = open_payment(client, order_id, customer={"email": "sari@example.co.id"})
    for path in (f"/checkout/{payment['id']}", f"/receipt/{payment['id']}"):
        page = client.get(path).get_data(as_text=True)
        assert 'id="customer-email">s***@example.co.id<' in page, path
        assert 'id="customer-name"' not in page and 'id="customer-phone"' not in page, path


@pytest.mark.parametrize("with_token", [False, True])
def test_the_checkout_page_cannot_change_the_travellers_details(client, order_id, with_token):
    payment = open_payment(client, order_id)
    form = {"name": "Eve", "email": "eve@evil.example", "phone": "+62 811 0000 0000"}
    if with_token:
        form["csrf_token"] = own_csrf_token(client, order_id)
    response = client.post(f"/checkout/{payment['id']}", data=form)
    assert response.status_code == 405 and "POST" not in response.headers["Allow"]
    assert stored(payment["id"]).customer == SARI


def test_the_pages_offer_no_way_to_edit_the_details(client, order_id):
    payment = open_payment(client, order_id, customer={})
    for path in (f"/checkout/{payment['id']}", f"/receipt/{payment['id']}"):
        page = client.get(path).get_data(as_text=True)
        assert "<input" not in page and "edit=" not in page, path


def test_the_transaction_services_body_gets_the_pay_button(client, order_id):
    payment = open_payment(client, order_id, customer={"email": "sari@example.co.id"})
    page = client.get(f"/checkout/{payment['id']}").get_data(as_text=True)
    assert 'id="pay"' in page and "snap.js" in page


@pytest.mark.parametrize(
    "query",
    [
        "next=//evil.com",
        "next=https://evil.com",
        "next=/\\evil.com",
        "next=javascript:alert(1)",
        "next=%2F%2Fevil.com",
        "url=https://tiketq.id.evil.com",
        "redirect=https://evil.com%23@tiketq.id",
        "order_id=ORD-OTHER&status_code=200&transaction_status=settlement",
    ],
)
def test_the_finish_page_only_ever_leads_to_the_receipt(client, order_id, query):
    payment = open_payment(client, order_id)
    response = client.get(f"/checkout/{payment['id']}/finish?{query}")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/receipt/{payment['id']}"


@pytest.mark.parametrize(
    "path",
    [
        "/checkout/%2F%2Fevil.com/finish",
        "/checkout/https:%2F%2Fevil.com/finish",
        "/checkout/javascript:alert(1)/finish",
    ],
)
def test_addresses_in_the_payment_id_lead_nowhere(client, path):
    response = client.get(path, follow_redirects=True)
    assert response.status_code == 404
    # Werkzeug merges doubled slashes with a redirect, which stays on this host.
    assert all(
        urlsplit(hop.headers["Location"]).netloc in ("", "localhost") for hop in response.history
    )


def test_query_parameters_from_midtrans_never_decide_the_status(client, order_id):
    payment = open_payment(client, order_id)
    response = client.get(
        f"/checkout/{payment['id']}/finish?order_id={order_id}&status_code=200"
        "&transaction_status=settlement",
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert "Belum memilih metode pembayaran" in page and "Lunas" not in page
    assert stored(payment["id"]).status is PaymentStatus.PENDING


@pytest.mark.parametrize(
    "reference",
    [NEVER_ISSUED_ID, "not-a-payment", "payment-ORD-LEGACY", "%3Cscript%3E"],
)
def test_unknown_payments_get_an_html_404(client, reference):
    for path in (f"/checkout/{reference}", f"/receipt/{reference}"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.mimetype == "text/html"
        assert "Pembayaran tidak ditemukan" in response.get_data(as_text=True)


def test_a_legacy_order_id_does_not_open_someone_elses_receipt(client, order_id):
    open_payment(client, order_id)
    assert client.get(f"/payments/payment-{order_id}").status_code == 200
    assert client.get(f"/receipt/payment-{order_id}").status_code == 404


def test_the_production_page_loads_snap_from_midtrans_with_the_client_key_only(
    app, client, order_id, monkeypatch
):
    payment = open_payment(client, order_id)
    for name, value in {
        "MIDTRANS_IS_PRODUCTION": True,
        "MIDTRANS_SIMULATOR": False,
        "MIDTRANS_CLIENT_KEY": "Mid-client-PRODUCTION",
        "MIDTRANS_SERVER_KEY": "Mid-server-PRODUCTION",
    }.items():
        monkeypatch.setitem(app.config, name, value)
    response = client.get(f"/checkout/{payment['id']}")
    page = response.get_data(as_text=True)
    assert re.search(
        r'<script src="https://app\.midtrans\.com/snap/snap\.js" '
        r'data-client-key="Mid-client-PRODUCTION" nonce="[^"]+" defer>',
        page,
    )
    assert "Mid-server-PRODUCTION" not in page and SERVER_KEY not in page
    assert "sandbox" not in page
    policy = csp(response)
    assert policy["script-src"].endswith(" https://app.midtrans.com")
    assert policy["frame-src"] == "https://app.midtrans.com"


def test_the_sandbox_page_loads_snap_from_the_sandbox_host(app, client, order_id, monkeypatch):
    payment = open_payment(client, order_id)
    monkeypatch.setitem(app.config, "MIDTRANS_SIMULATOR", False)
    response = client.get(f"/checkout/{payment['id']}")
    assert 'src="https://app.sandbox.midtrans.com/snap/snap.js"' in response.get_data(True)
    assert csp(response)["frame-src"] == "https://app.sandbox.midtrans.com"


def test_the_simulator_page_loads_the_simulators_snap_js(app, client, order_id, midtrans_simulator):
    payment = open_payment(client, order_id)
    response = client.get(f"/checkout/{payment['id']}")
    page = response.get_data(as_text=True)
    assert f'src="{midtrans_simulator.url}/snap/snap.js" data-client-key="SB-Mid-client-' in page
    assert SERVER_KEY not in page
    assert csp(response)["frame-src"] == midtrans_simulator.url


def test_the_policy_allows_only_nonced_scripts_and_no_framing(client, order_id):
    payment = open_payment(client, order_id)
    first = client.get(f"/checkout/{payment['id']}")
    second = client.get(f"/checkout/{payment['id']}")
    policy = csp(first)
    nonce = re.search(r"'nonce-([^']+)'", policy["script-src"]).group(1)
    assert nonce != re.search(r"'nonce-([^']+)'", csp(second)["script-src"]).group(1)
    scripts = re.findall(r"<script[^>]*>", first.get_data(as_text=True))
    assert len(scripts) == 2 and all(f'nonce="{nonce}"' in tag for tag in scripts)
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'none'" and policy["form-action"] == "'self'"
    header = first.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in header and "unsafe-eval" not in header
    assert first.headers["X-Frame-Options"] == "DENY"
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    assert first.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_pages_with_payment_data_are_never_cached(client, order_id):
    payment = open_payment(client, order_id)
    for path in (
        f"/checkout/{payment['id']}",
        f"/receipt/{payment['id']}",
        f"/checkout/{payment['id']}/status.json",
        f"/payments/{payment['id']}",
    ):
        assert client.get(path).headers["Cache-Control"] == "no-store", path


def test_the_session_cookie_is_http_only_and_same_site(client, order_id):
    payment = open_payment(client, order_id)
    # Picking a language is what puts something in the session, and so sets the cookie.
    cookie = client.get(f"/checkout/{payment['id']}?lang=en").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_in_production_the_session_cookie_is_secure_and_host_only():
    settings = from_environ({"MIDTRANS_IS_PRODUCTION": "true"}, "/srv/instance")
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["SESSION_COOKIE_NAME"].startswith("__Host-")


def test_bahasa_indonesia_is_the_default_language(client, order_id):
    payment = open_payment(client, order_id)
    page = client.get(f"/checkout/{payment['id']}").get_data(as_text=True)
    assert '<html lang="id">' in page and "Bayar sekarang" in page


def test_the_browsers_language_is_followed(client, order_id):
    payment = open_payment(client, order_id)
    response = client.get(
        f"/checkout/{payment['id']}", headers={"Accept-Language": "en-US,en;q=0.9,id;q=0.5"}
    )
    assert '<html lang="en">' in response.get_data(as_text=True)


def test_the_language_switch_wins_and_is_remembered(client, order_id):
    payment = open_payment(client, order_id)
    english = client.get(f"/checkout/{payment['id']}").get_data(as_text=True)
    switch = re.search(r'<a href="([^"]+)" lang="en" hreflang="en">English</a>', english)
    page = client.get(switch.group(1)).get_data(as_text=True)
    assert '<html lang="en">' in page and "Pay now" in page
    receipt = client.get(f"/receipt/{payment['id']}").get_data(as_text=True)
    assert '<html lang="en">' in receipt and "Payment receipt" in receipt
    back = client.get(
        f"/receipt/{payment['id']}?lang=id", headers={"Accept-Language": "en"}
    ).get_data(as_text=True)
    assert '<html lang="id">' in back


def test_status_json_reports_the_stored_truth(client, order_id):
    payment = open_payment(client, order_id)
    response = client.get(f"/checkout/{payment['id']}/status.json")
    assert response.get_json() == {
        "status": "pending",
        "status_detail": None,
        "payment_type": None,
        "paid": False,
        "expires_at": stored(payment["id"]).expires_at.isoformat(),
        "receipt_url": f"/receipt/{payment['id']}",
    }


@pytest.mark.parametrize(
    ("method", "shown"),
    [
        ("bca_va", ["Nomor virtual account", "BCA"]),
        ("permata_va", ["Nomor virtual account", "Permata"]),
        ("echannel", ["Kode perusahaan", "70012", "Kode pembayaran"]),
        ("indomaret", ["Tunjukkan kode pembayaran ini ke kasir Indomaret"]),
        ("gopay", ["Bayar di aplikasi GoPay", "Pindai kode QR"]),
    ],
)
def test_a_pending_payment_tells_the_traveller_how_to_pay(
    client, order_id, midtrans_simulator, method, shown
):
    payment = open_payment(client, order_id)
    midtrans_simulator.pay(order_id, method, "pending")
    assert client.get(f"/checkout/{payment['id']}/status.json").get_json()["payment_type"]

    page = client.get(f"/receipt/{payment['id']}").get_data(as_text=True)
    details = stored(payment["id"]).payment_details
    code = (
        details.get("va_numbers", [{}])[0].get("va_number")
        or details.get("permata_va_number")
        or details.get("bill_key")
        or details.get("payment_code")
    )
    assert "Menunggu pembayaran" in page and 'data-watch="true"' in page
    assert all(text in page for text in shown)
    assert code is None or code in page


def test_a_paid_payment_shows_when_and_its_reference(client, order_id, midtrans_simulator):
    payment = open_payment(client, order_id)
    midtrans_simulator.pay(order_id, "credit_card", "capture")
    client.get(f"/checkout/{payment['id']}/status.json")

    page = client.get(f"/receipt/{payment['id']}").get_data(as_text=True)
    paid = stored(payment["id"])
    assert paid.status is PaymentStatus.SUCCESS
    assert "Lunas" in page and "Dibayar pada" in page and paid.gateway_transaction_id in page
    assert "48111111-1114" in page and "data-watch" not in page
    response = client.get(f"/checkout/{payment['id']}")
    assert response.status_code == 303 and response.headers["Location"].startswith("/receipt/")


def test_an_attempt_out_of_time_offers_a_fresh_one_for_the_same_order(client, order_id):
    payment = open_payment(client, order_id)
    stored(payment["id"]).expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()

    page = client.get(f"/checkout/{payment['id']}").get_data(as_text=True)
    assert "Waktu pembayaran untuk tagihan ini sudah habis." in page and 'id="pay"' not in page
    response = client.post(
        f"/checkout/{payment['id']}/retry", data={"csrf_token": csrf_token(page)}
    )

    assert response.status_code == 303
    fresh_id = response.headers["Location"].removeprefix("/checkout/").removesuffix("?pay=1")
    fresh, old = stored(fresh_id), stored(payment["id"])
    assert (fresh.order_id, fresh.gateway_order_id, fresh.attempt) == (order_id, f"{order_id}~2", 2)
    assert (fresh.amount, fresh.items, fresh.customer) == (old.amount, old.items, old.customer)
    assert fresh.snap_token and fresh.snap_token != old.snap_token
    assert old.status is PaymentStatus.EXPIRED
    assert 'id="pay"' in client.get(f"/checkout/{fresh_id}").get_data(as_text=True)


def test_a_fresh_attempt_without_a_csrf_token_is_refused(client, order_id):
    payment = open_payment(client, order_id)
    stored(payment["id"]).expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    response = client.post(f"/checkout/{payment['id']}/retry")
    assert response.status_code == 400
    attempts = db.session.scalars(sa.select(Payment.attempt).where(Payment.order_id == order_id))
    assert list(attempts) == [1]


def test_a_csrf_token_from_another_session_is_refused(app, client, order_id):
    payment = open_payment(client, order_id)
    stored(payment["id"]).expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    foreign = csrf_token(app.test_client().get(f"/checkout/{payment['id']}").get_data(True))
    client.get(f"/checkout/{payment['id']}")
    response = client.post(f"/checkout/{payment['id']}/retry", data={"csrf_token": foreign})
    assert response.status_code == 400
    attempts = db.session.scalars(sa.select(Payment.attempt).where(Payment.order_id == order_id))
    assert list(attempts) == [1]


def test_a_failed_card_offers_a_fresh_attempt(client, order_id, midtrans_simulator):
    payment = open_payment(client, order_id)
    midtrans_simulator.pay(order_id, "credit_card", "deny")
    client.get(f"/checkout/{payment['id']}/status.json")
    receipt = client.get(f"/receipt/{payment['id']}").get_data(as_text=True)
    assert "Gagal" in receipt and f'action="/checkout/{payment["id"]}/retry"' in receipt
    page = client.get(f"/checkout/{payment['id']}").get_data(as_text=True)
    assert "Pembayaran ini gagal." in page and 'id="retry"' in page


def test_a_canceled_payment_cannot_be_reopened_by_the_traveller(client, order_id):
    payment = open_payment(client, order_id)
    token = own_csrf_token(client, order_id)
    stored(payment["id"]).transition_to(PaymentStatus.CANCELED, source="api")
    db.session.commit()

    response = client.get(f"/checkout/{payment['id']}")
    assert response.status_code == 303
    receipt = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Dibatalkan" in receipt and "Tidak ada dana yang ditarik" in receipt
    retry = client.post(f"/checkout/{payment['id']}/retry", data={"csrf_token": token})
    assert retry.status_code == 409
    assert "Pembayaran ini sudah tidak dapat diubah." in retry.get_data(as_text=True)


def test_snap_js_comes_from_where_the_configuration_says():
    base = {"MIDTRANS_IS_PRODUCTION": False, "MIDTRANS_SIMULATOR": True}
    assert snap_js_url({**base, "MIDTRANS_SIMULATOR_IN_APP": True}) == "/_simulator/snap/snap.js"
    assert (
        snap_js_url({**base, "MIDTRANS_BASE_URL": "http://127.0.0.1:8004/"})
        == "http://127.0.0.1:8004/snap/snap.js"
    )
    assert snap_js_url({"MIDTRANS_SIMULATOR": False}) == (
        "https://app.sandbox.midtrans.com/snap/snap.js"
    )
    assert snap_js_url({"MIDTRANS_IS_PRODUCTION": True}) == "https://app.midtrans.com/snap/snap.js"
    assert snap_js_url({**base, "MIDTRANS_SNAP_JS_URL": "http://sim.local/snap/snap.js"}) == (
        "http://sim.local/snap/snap.js"
    )


PRODUCTION = {
    "MIDTRANS_IS_PRODUCTION": "true",
    "MIDTRANS_SERVER_KEY": "Mid-server-x",
    "MIDTRANS_CLIENT_KEY": "Mid-client-x",
    "JWT_SECRET": "confirmations-secret",
}


def test_production_needs_a_secret_key_shared_by_every_worker():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        validate(from_environ(PRODUCTION, "/srv/instance"))


def test_production_refuses_another_snap_js():
    env = {**PRODUCTION, "SECRET_KEY": "s", "MIDTRANS_SNAP_JS_URL": "https://evil.example/s.js"}
    with pytest.raises(ConfigError, match="MIDTRANS_SNAP_JS_URL"):
        validate(from_environ(env, "/srv/instance"))


def test_a_negative_proxy_count_is_refused():
    with pytest.raises(ConfigError, match="PROXY_FIX_HOPS"):
        validate(from_environ({"PROXY_FIX_HOPS": "-1"}, "/srv/instance"))


def test_outside_production_the_secret_key_is_made_once_in_the_instance_folder(tmp_path):
    first = instance_secret_key(str(tmp_path / "instance"))
    assert len(first) == 64
    assert instance_secret_key(str(tmp_path / "instance")) == first
    secret = tmp_path / "instance" / "secret_key"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in secret.parent.iterdir()] == ["secret_key"]


def test_an_overdue_open_payment_reads_as_expired_awaiting_confirmation(
    client, order_id, midtrans_simulator
):
    payment = open_payment(client, order_id)
    midtrans_simulator.pay(order_id, "bca_va", "pending")
    client.get(f"/checkout/{payment['id']}/status.json")
    stored(payment["id"]).expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()

    page = client.get(f"/receipt/{payment['id']}").get_data(as_text=True)

    assert re.search(r'id="status-title"[^>]*>\s*Kedaluwarsa, menunggu konfirmasi\s*<', page)
    assert "Menunggu pembayaran" not in page
    assert "Batas waktu pembayaran sudah lewat" not in page
    # Past the deadline the VA number is no use; the page still watches for a late payment.
    assert 'id="va-number"' not in page and 'data-watch="true"' in page
    assert 'id="retry"' in page


@pytest.mark.parametrize(
    ("method", "targets"),
    [
        ("bca_va", ["va-number"]),
        ("permata_va", ["va-number"]),
        ("echannel", ["biller-code", "bill-key"]),
        ("alfamart", ["payment-code"]),
    ],
)
def test_each_code_to_pay_with_has_a_copy_button_that_appears_with_javascript(
    client, order_id, midtrans_simulator, method, targets
):
    payment = open_payment(client, order_id)
    midtrans_simulator.pay(order_id, method, "pending")
    client.get(f"/checkout/{payment['id']}/status.json")

    page = client.get(f"/receipt/{payment['id']}").get_data(as_text=True)

    buttons = re.findall(r'<button type="button" class="[^"]*copy[^"]*"[^>]*>', page)
    assert [re.search(r'data-copy="([^"]+)"', b).group(1) for b in buttons] == targets
    # Hidden until the script finds a clipboard; the code itself is plain, selectable text.
    assert all(" hidden" in button and "Salin" in page for button in buttons)
    for target in targets:
        assert re.search(rf'<span class="code big" id="{target}">\d+</span>', page)
        assert f'id="{target}-copied" class="copied" role="status"' in page


def test_a_pending_qris_payment_shows_its_qr_code_drawn_on_the_server(
    client, order_id, midtrans_simulator
):
    payment = open_payment(client, order_id)
    midtrans_simulator.pay(order_id, "other_qris", "pending")
    client.get(f"/checkout/{payment['id']}/status.json")
    qr_string = stored(payment["id"]).payment_details["qr_string"]

    response = client.get(f"/receipt/{payment['id']}")
    page = response.get_data(as_text=True)

    svg = re.search(r'<figure class="qr" id="qr">\s*<svg [^>]*>.*?</svg>', page, re.S).group(0)
    assert 'role="img"' in svg and "<title>Kode QR pembayaran</title>" in svg
    assert "<path" in svg and "<script" not in svg and "style=" not in svg
    assert qr_string not in page
    assert "Pindai kode QR" in page
    # Drawn inline: no image from anywhere else is needed.
    checkout = client.get(f"/checkout/{payment['id']}")
    assert "<img" not in page and csp(response)["img-src"] == csp(checkout)["img-src"]


def test_a_pending_gopay_payment_shows_midtrans_qr_image_and_the_app_link(
    app, client, order_id, midtrans_simulator, monkeypatch
):
    payment = open_payment(client, order_id)
    midtrans_simulator.pay(order_id, "gopay", "pending")
    client.get(f"/checkout/{payment['id']}/status.json")
    details = stored(payment["id"]).payment_details
    # Snap.js from Midtrans's host, so that the Core API (the simulator) is another origin.
    monkeypatch.setitem(app.config, "MIDTRANS_SIMULATOR", False)

    response = client.get(f"/receipt/{payment['id']}")
    page = response.get_data(as_text=True)

    image = re.search(r'<img [^>]*id="qr-image"[^>]*>', page).group(0)
    assert f'src="{escape(details["qr_code_url"])}"' in image
    assert details["qr_code_url"].startswith(f"{midtrans_simulator.url}/v2/gopay/")
    link = re.search(r'<a [^>]*id="app-link"[^>]*>', page).group(0)
    assert f'href="{escape(details["deeplink_url"])}"' in link and "on-phone" in link
    assert "Bayar di aplikasi GoPay" in page
    # The QR image comes from Midtrans's API host, so only this page lets images in from there.
    snap = "https://app.sandbox.midtrans.com"
    assert csp(response)["img-src"] == f"'self' data: {snap} {midtrans_simulator.url}"
    assert csp(client.get(f"/checkout/{payment['id']}"))["img-src"] == f"'self' data: {snap}"


def test_a_pending_shopeepay_payment_offers_its_app_link(client, order_id, midtrans_simulator):
    payment = open_payment(client, order_id)
    midtrans_simulator.pay(order_id, "shopeepay", "pending")
    client.get(f"/checkout/{payment['id']}/status.json")

    page = client.get(f"/receipt/{payment['id']}").get_data(as_text=True)

    assert 'id="app-link"' in page and "Bayar di aplikasi ShopeePay" in page
    assert 'id="qr"' not in page and 'id="qr-image"' not in page


def wallet_payment(client, order_id: str, **details) -> str:
    """A pending GoPay payment whose stored details say `details`."""
    payment = open_payment(client, order_id)
    row = stored(payment["id"])
    row.payment_type = "gopay"
    row.payment_details = details
    db.session.commit()
    return payment["id"]


@pytest.mark.parametrize(
    "url", ["https://evil.example/v2/gopay/1/qr-code", "javascript:alert(1)", "data:image/png,x"]
)
def test_a_qr_image_from_anywhere_but_midtrans_api_is_not_shown(client, order_id, url):
    payment_id = wallet_payment(client, order_id, qr_code_url=url)
    response = client.get(f"/receipt/{payment_id}")
    page = response.get_data(as_text=True)
    assert 'id="qr-image"' not in page and str(escape(url)) not in page
    assert csp(response)["img-src"] == csp(client.get(f"/checkout/{payment_id}"))["img-src"]


def test_an_app_link_is_shown_only_for_a_web_or_wallet_app_address(client, order_id):
    shown = {"https://gojek.link/gopay/pay?t=1": True, "gojek://gopay/pay?t=1": True}
    refused = {"javascript:alert(1)": False, "data:text/html,x": False, "vbscript:x": False}
    for number, (url, expected) in enumerate({**shown, **refused}.items()):
        payment_id = wallet_payment(client, f"{order_id}-{number}", deeplink_url=url)
        page = client.get(f"/receipt/{payment_id}").get_data(as_text=True)
        assert ('id="app-link"' in page) is expected, url
        assert (f'href="{escape(url)}"' in page) is expected, url


@pytest.mark.parametrize("outcome", ["deny", "expire", "failure"])
def test_a_failed_denied_or_expired_receipt_pays_again_in_one_tap(
    client, order_id, midtrans_simulator, outcome
):
    payment = open_payment(client, order_id)
    method = "credit_card" if outcome == "deny" else "bca_va"
    midtrans_simulator.pay(order_id, method, outcome)
    client.get(f"/checkout/{payment['id']}/status.json")

    receipt = client.get(f"/receipt/{payment['id']}").get_data(as_text=True)

    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', receipt, re.S)
    assert form.group(1) == f"/checkout/{payment['id']}/retry"
    assert 'id="retry"' in form.group(2) and "Bayar lagi" in form.group(2)
    response = client.post(form.group(1), data={"csrf_token": csrf_token(receipt)})
    assert response.status_code == 303
    fresh_id, query = response.headers["Location"].removeprefix("/checkout/").split("?")
    assert query == "pay=1" and stored(fresh_id).attempt == 2
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'data-autopay="true"' in page and 'id="pay"' in page


def test_the_checkout_page_opens_snap_by_itself_only_when_asked_and_payable(client, order_id):
    payment = open_payment(client, order_id)
    assert "data-autopay" not in client.get(f"/checkout/{payment['id']}").get_data(True)
    asked = client.get(f"/checkout/{payment['id']}?pay=1").get_data(True)
    assert 'data-autopay="true"' in asked
    stored(payment["id"]).expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert "data-autopay" not in client.get(f"/checkout/{payment['id']}?pay=1").get_data(True)


def test_the_checkout_page_puts_the_amount_and_the_pay_button_first(client, order_id):
    payment = open_payment(client, order_id)
    page = client.get(f"/checkout/{payment['id']}").get_data(as_text=True)
    main = page[page.index("<main") :]
    assert main.index('id="total"') < main.index('id="pay"') < main.index('class="items"')
    assert main.index('id="pay"') < main.index('id="customer-email"')
