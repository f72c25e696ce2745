"""Take the README's screenshots of the checkout and receipt pages, on a desktop and a phone.

Runs the service as `make run` does (SQLite and the in-app Midtrans simulator, in a temporary
folder, with FINISH_URL set), pays one order by BCA virtual account and another by QRIS through
the simulator's Snap, and writes PNGs to docs/screenshots/. Needs the dev requirements and
Debian's chromium:

    .venv/bin/python docs/screenshots.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

import requests
from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
sys.path.insert(0, str(ROOT))
# The browser tests' launch settings: Debian's chromium, never a downloaded one.
from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS, DESKTOP, PHONE  # noqa: E402
from tests.support.processes import free_port  # noqa: E402

VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
ORDER = {
    "order_id": "ORD-DEMO-SCREENSHOT",
    "amount": 1_275_000,
    "payment_method": "bank_transfer",
    "customer_details": {
        "first_name": "Sari Dewi",
        "email": "sari@example.co.id",
        "phone": "+62 812 3456 7890",
    },
    "item_details": [
        {"id": "GA-404", "name": "CGK - DPS Garuda GA-404, 12 Des", "price": 1_200_000},
        {"id": "BAG-20", "name": "Bagasi 20 kg", "price": 50_000, "quantity": 2},
        {"id": "PROMO", "name": "Diskon TIKETQHEMAT", "price": -25_000},
    ],
}
# The transaction service's body: an email only, as most payments are made.
QRIS_ORDER = {
    "order_id": "ORD-DEMO-QRIS",
    "amount": 475_000,
    "payment_method": "qris",
    "customer_details": {"email": "budi@example.co.id"},
    "item_details": [
        {"id": "KAI-7", "name": "Kereta Argo Bromo Anggrek, GMR - SBI", "price": 475_000}
    ],
}


def serve(folder: str) -> str:
    """Start the service with its in-app simulator on loopback; return its address."""
    port = free_port()
    os.environ.update(
        PORT=str(port),
        DATABASE_URL=f"sqlite:///{folder}/tiketq.sqlite3",
        MIDTRANS_SIMULATOR_STATE=f"{folder}/simulator.sqlite3",
        # So that the receipts show the way back to TiketQ.
        FINISH_URL="https://tiketq.example/orders/{order_id}",
    )
    from flask_migrate import upgrade

    from tiketq import create_app

    app = create_app()
    with app.app_context():
        upgrade()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}"


def shoot(browser: Browser, url: str) -> list[Path]:
    """Open the checkout page on both screens, pay by VA on the desktop, then shoot the receipt."""
    payment = requests.post(f"{url}/payments", json=ORDER, timeout=10).json()
    shots: list[Path] = []
    pages = {}
    for name, viewport in VIEWPORTS.items():
        context = browser.new_context(locale="id-ID", timezone_id="Asia/Jakarta", viewport=viewport)
        pages[name] = context.new_page()
        pages[name].goto(payment["payment_url"])
        shots.append(OUT / f"checkout-{name}.png")
        pages[name].screenshot(path=shots[-1], full_page=True)

    desktop = pages["desktop"]
    desktop.click("#pay")
    snap = desktop.frame_locator("iframe[title^='Midtrans Snap']")
    snap.locator("input[value=bca_va]").check()
    shots.append(OUT / "snap-simulator-desktop.png")
    desktop.screenshot(path=shots[-1])
    snap.locator("#pay-button").click()
    snap.locator("#done").click()
    desktop.wait_for_url("**/receipt/**")

    for name, page in pages.items():
        page.goto(f"{url}/receipt/{payment['id']}")
        page.locator("#va-number").wait_for()
        shots.append(OUT / f"receipt-{name}.png")
        page.screenshot(path=shots[-1], full_page=True)
    return shots + shoot_qris(pages, url)


def shoot_qris(pages: dict[str, Page], url: str) -> list[Path]:
    """Pay a QRIS order in Snap, pending, and shoot its receipt with the QR on both screens."""
    payment = requests.post(f"{url}/payments", json=QRIS_ORDER, timeout=10).json()
    phone = pages["phone"]
    phone.goto(payment["payment_url"])
    phone.click("#pay")
    snap = phone.frame_locator("iframe[title^='Midtrans Snap']")
    snap.locator("input[value=other_qris]").check()
    snap.locator("#pay-button").click()
    snap.locator("#done").click()
    phone.wait_for_url("**/receipt/**")
    shots = []
    for name, page in pages.items():
        page.goto(f"{url}/receipt/{payment['id']}")
        page.locator("#qr svg").wait_for()
        shots.append(OUT / f"receipt-qris-{name}.png")
        page.screenshot(path=shots[-1], full_page=True)
    return shots


def main() -> None:
    """Write the screenshots."""
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        url = serve(folder)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        shots = shoot(browser, url)
        browser.close()
    for png in shots:
        print(f"{png.relative_to(ROOT)}  {png.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
