"""A day of payments for the ops pages, made and changed the way the service does it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from tests.support.midtrans import notification
from tests.support.simulator import Simulator
from tiketq.extensions import db
from tiketq.formats import WIB
from tiketq.gateway import CheckoutRequest, current_gateway
from tiketq.payments import heartbeats, notifications
from tiketq.payments.models import (
    Delivery,
    DeliveryStatus,
    OutboxMessage,
    Payment,
    PaymentEvent,
    utcnow,
)
from tiketq.payments.notifications import receive_notification
from tiketq.payments.status import PaymentStatus

# 15:00 WIB on a day of its own, so that nothing else in the database falls on "today".
NOW = datetime(2026, 3, 14, 8, 0, tzinfo=UTC)


def wib(hour: int, minute: int = 0, day: int = 14) -> datetime:
    """A time of NOW's day (or another day of March 2026) in WIB."""
    return datetime(2026, 3, day, hour, minute, tzinfo=WIB)


# Each payment has a transaction at the simulator, whose notifications are stored and applied by
# the worker.


def simulator() -> Simulator:
    """The simulator the app talks to (also for callers without the fixture, e.g. the browser)."""
    return Simulator(current_app.config["MIDTRANS_BASE_URL"])


def open_payment(
    label: str,
    amount: int,
    created_at: datetime,
    *,
    method: str | None = None,
    expires_in: timedelta = timedelta(hours=24),
    charged: int | None = None,
) -> Payment:
    """A payment created at `created_at`; `charged` is another amount for Midtrans to hold."""
    order_id = f"ORD-{label}-{uuid.uuid4().hex[:8].upper()}"
    checkout = current_gateway().create_checkout(
        CheckoutRequest(
            gateway_order_id=order_id,
            amount=charged or amount,
            items=(),
            customer={},
            payment_method=None,
            # The simulator's clock is the real one: its transaction must still be payable.
            starts_at=utcnow(),
            expires_in_minutes=24 * 60,
        )
    )
    payment = Payment(
        order_id=order_id,
        gateway_order_id=order_id,
        amount=amount,
        payment_method=method,
        snap_token=checkout.token,
        expires_at=created_at + expires_in,
        request_fingerprint="seeded",
        created_at=created_at,
        updated_at=created_at,
    )
    payment.events.append(PaymentEvent(to_status="pending", source="api", created_at=created_at))
    db.session.add(payment)
    db.session.commit()
    return payment


def notify(body: dict, at: datetime):
    """Deliver a notification at `at` and let the worker's inbox job apply it then."""
    receipt = receive_notification(json.dumps(body).encode(), gateway=current_gateway(), now=at)
    notifications.apply_waiting(current_gateway(), now=at)
    return receipt


def pay(payment: Payment, method: str, outcome: str, at: datetime, **fields):
    """The traveller pays at Midtrans; its notification (plus unsigned `fields`) is applied."""
    sim = simulator()
    sim.pay(payment.gateway_order_id, method, outcome)
    return notify({**sim.notification(payment.gateway_order_id), **fields}, at)


def move(payment: Payment, transaction_status: str, at: datetime):
    """Midtrans moves the transaction (a refund...); its notification is applied."""
    sim = simulator()
    sim.control(
        "POST",
        f"/transactions/{payment.gateway_order_id}/transition",
        {"transaction_status": transaction_status},
    ).raise_for_status()
    return notify(sim.notification(payment.gateway_order_id), at)


def seed(now: datetime) -> dict[str, Payment]:
    """Ten attempts today, two yesterday, notifications not applied, an outbox, two workers.

    Times count back from `now`; at NOW (15:00 WIB) every comment's clock time holds.
    """

    def ago(minutes: float) -> datetime:
        return now - timedelta(minutes=minutes)

    p = {}
    p["A"] = open_payment("A", 150_000, ago(350), method="bank_transfer")  # 09:10
    pay(p["A"], "bca_va", "settlement", ago(340))
    p["B"] = open_payment("B", 250_000, ago(280), method="gopay")  # 10:20
    pay(p["B"], "gopay", "settlement", ago(275))
    p["C"] = open_payment("C", 100_000, ago(5), method="bank_transfer")  # 14:55
    p["D"] = open_payment("D", 400_000, ago(45))  # 14:15
    p["D"].checks, p["D"].last_checked_at = 2, ago(15)
    p["E"] = open_payment("E", 75_000, ago(390), method="bank_transfer")  # 08:30
    p["E"].transition_to(PaymentStatus.EXPIRED, source="reconcile")
    p["E"].events[-1].created_at = ago(20)
    db.session.commit()
    p["F"] = open_payment("F", 500_000, ago(50), method="credit_card")  # 14:10
    pay(p["F"], "credit_card", "deny", ago(48))
    p["G"] = open_payment("G", 1_250_000, ago(40), method="credit_card")  # 14:20
    pay(p["G"], "credit_card", "challenge", ago(39))
    p["H"] = open_payment("H", 300_000, ago(240), method="gopay")  # 11:00
    pay(p["H"], "gopay", "settlement", ago(235))
    move(p["H"], "refund", ago(180))
    # Midtrans holds Rp 1.000 less than the payment asks for.
    p["I"] = open_payment("I", 200_000, ago(10), method="bank_transfer", charged=199_000)  # 14:50
    pay(p["I"], "bca_va", "settlement", ago(8))
    p["J"] = open_payment("J", 120_000, ago(120), method="bank_transfer")  # 13:00
    p["J"].transition_to(PaymentStatus.CANCELED, source="api")
    db.session.commit()
    pay(p["J"], "bca_va", "settlement", ago(90))
    # Yesterday: paid after its expiry, and one still pending long past its expiry.
    p["K"] = open_payment("K", 90_000, ago(1140), expires_in=timedelta(hours=1))  # 20:00
    p["K"].transition_to(PaymentStatus.EXPIRED, source="expiry")
    db.session.commit()
    pay(p["K"], "bca_va", "settlement", ago(1050))
    p["L"] = open_payment("L", 60_000, ago(1080), expires_in=timedelta(hours=1))  # 21:00

    forged = notification("ORD-FORGED", "settlement")
    forged["signature_key"] = "0" * 128
    for minutes in (30, 25, 960):
        raw = json.dumps(forged).encode()
        receive_notification(raw, gateway=current_gateway(), now=ago(minutes))
    notify(notification("ORD-NOBODY", "settlement"), ago(24))

    succeeded = {
        message.payment_id: message
        for message in db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.event_type == "payment.succeeded")
        )
    }
    first, second = succeeded[p["A"].id], succeeded[p["B"].id]
    first.dispatched_at = second.dispatched_at = ago(339)
    first.deliveries += [
        Delivery(
            destination="transaction-service",
            url="http://transaction-service:8000/confirm",
            status=DeliveryStatus.DEAD,
            attempts=8,
            last_status_code=500,
            last_error="HTTP 500",
            created_at=ago(339),
            next_attempt_at=ago(120),
        ),
        Delivery(
            destination="user-service",
            url="http://user-service/payment-events",
            attempts=2,
            last_status_code=503,
            created_at=ago(20),
            next_attempt_at=ago(-10),
        ),
    ]
    second.deliveries += [
        Delivery(
            destination="transaction-service",
            url="http://transaction-service:8000/confirm",
            status=DeliveryStatus.DELIVERED,
            attempts=1,
            created_at=ago(274),
            delivered_at=ago(274),
        ),
        Delivery(
            destination="user-service",
            url="http://user-service/payment-events",
            created_at=ago(10),
            next_attempt_at=ago(10),
        ),
    ]
    db.session.commit()
    rounds = {"applied": 0, "reconciled": 3, "expired": 1, "dispatched": 2, "delivered": 4}
    heartbeats.record_heartbeat("worker-a:101", rounds, now=now - timedelta(seconds=10))
    heartbeats.record_heartbeat("worker-old:7", rounds, now=now - timedelta(hours=2))
    return p
