"""Retention on PostgreSQL: the purge drops and deletes what is past its time, and nothing else."""

from __future__ import annotations

import hashlib
import html
import json
import re
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, current_app

from tests.support.midtrans import settle
from tests.support.staff import STAFF, log_in
from tiketq import worker
from tiketq.config import ConfigError, from_environ, validate
from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.ops import limiter
from tiketq.outbound import current_outbound
from tiketq.payments import outbox, reconcile, retention, service
from tiketq.payments.models import (
    Delivery,
    MaintenanceRun,
    Notification,
    OutboxMessage,
    Payment,
    PaymentEvent,
    Refund,
    WorkerHeartbeat,
    utcnow,
)
from tiketq.payments.retention import Retention

DAY = timedelta(days=1)
NOTHING = dict.fromkeys(retention.KINDS, 0)
PURGES = MaintenanceRun.job == "purge"


def a_payment(label: str = "R") -> Payment:
    """A paid payment with its first event, stored directly."""
    order_id = f"ORD-{label}-{uuid.uuid4().hex[:10].upper()}"
    payment = Payment(
        order_id=order_id,
        gateway_order_id=order_id,
        amount=150_000,
        status="success",
        paid_at=utcnow(),
        expires_at=utcnow() + DAY,
        request_fingerprint="seeded",
    )
    db.session.add(payment)
    db.session.flush()
    db.session.add(
        PaymentEvent(payment_id=payment.id, from_status=None, to_status="success", source="test")
    )
    return payment


def a_notification(
    payment: Payment | None, outcome: str, age: timedelta, **fields: Any
) -> Notification:
    """A notification received `age` ago, its body as the door stores an accepted one."""
    order_id = payment.gateway_order_id if payment else f"ORD-NONE-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"order_id": order_id, "transaction_status": "settlement", "nama": "Ñoño"})
    row = Notification(
        **{
            "received_at": utcnow() - age,
            "raw_body": body,
            "body_length": len(body.encode()),
            "order_id": order_id,
            "transaction_status": "settlement",
            "status_code": "200",
            "gross_amount": "150000.00",
            "signature_ok": True,
            "payment_id": payment.id if payment else None,
            "outcome": outcome,
            **fields,
        }
    )
    db.session.add(row)
    return row


def a_message(
    payment: Payment,
    event_type: str,
    dispatched: timedelta | None,
    *deliveries: tuple[str, timedelta | None],
) -> OutboxMessage:
    """An outbox message dispatched `dispatched` ago, with deliveries (status, delivered ago)."""
    message = OutboxMessage(
        payment_id=payment.id,
        event_type=event_type,
        payload={"order_id": payment.order_id, "event_type": event_type},
        dispatched_at=utcnow() - dispatched if dispatched is not None else None,
    )
    for number, (status, delivered) in enumerate(deliveries):
        message.deliveries.append(
            Delivery(
                destination=f"destination-{number}",
                url="http://127.0.0.1:9/",
                status=status,
                attempts=1,
                delivered_at=utcnow() - delivered if delivered is not None else None,
            )
        )
    db.session.add(message)
    return message


def a_heartbeat(age: timedelta) -> WorkerHeartbeat:
    beat = WorkerHeartbeat(
        worker_id=f"host:{uuid.uuid4().hex[:6]}",
        started_at=utcnow() - age,
        beat_at=utcnow() - age,
        last_round={"applied": 0},
    )
    db.session.add(beat)
    return beat


def count(model: type) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_a_pass_drops_and_deletes_what_is_past_its_retention_and_keeps_the_rest(app):
    paid, other, third = a_payment(), a_payment(), a_payment()
    db.session.add(
        Refund(payment_id=paid.id, refund_key="k1", amount=50_000, reason="r", status="succeeded")
    )
    old_applied = a_notification(paid, "applied", 200 * DAY, applied_at=utcnow() - 200 * DAY)
    old_duplicate = a_notification(paid, "duplicate", 91 * DAY)
    old_duplicate.body_length = None
    kept_notifications = [
        a_notification(paid, "applied", 89 * DAY),
        a_notification(paid, "received", 200 * DAY, next_attempt_at=utcnow()),
        a_notification(paid, "failed", 200 * DAY, attempts=5, last_error="boom"),
        a_notification(None, "unknown_order", 200 * DAY),
        a_notification(paid, "stale", 200 * DAY),
        a_notification(paid, "flagged", 200 * DAY),
        a_notification(paid, "malformed", 6 * DAY, signature_ok=False),
    ]
    old_rejected = a_notification(paid, "bad_signature", 8 * DAY, signature_ok=False)
    done = a_message(paid, "payment.succeeded", 200 * DAY, ("delivered", 199 * DAY))
    with_dead = a_message(
        paid, "payment.refunded", 200 * DAY, ("delivered", 199 * DAY), ("dead", None)
    )
    kept_messages = [
        with_dead,
        a_message(other, "payment.succeeded", 200 * DAY, ("pending", None)),
        a_message(other, "payment.refunded", 30 * DAY, ("delivered", 30 * DAY)),
        a_message(third, "payment.succeeded", None),
        # Resent by a person ten days ago: its payload stays as long as that delivery.
        a_message(third, "payment.refunded", 200 * DAY, ("delivered", 10 * DAY)),
    ]
    old_beat, recent_beat = a_heartbeat(8 * DAY), a_heartbeat(timedelta(hours=1))
    db.session.commit()
    gone = (old_rejected.id, old_beat.worker_id)
    bodies = {n.id: (n.raw_body, n.body_length) for n in (old_applied, old_duplicate)}
    kept_bodies = {n.id: n.raw_body for n in kept_notifications}
    before = {model: count(model) for model in (Payment, PaymentEvent, Refund)}

    run = retention.purge(Retention())

    assert run.job == "purge" and run.finished_at is not None
    assert run.summary == {
        "bodies": 2,
        "rejected": 1,
        "deliveries": 2,
        "payloads": 1,
        "heartbeats": 1,
    }
    db.session.expire_all()
    for notification in (old_applied, old_duplicate):
        body, length = bodies[notification.id]
        assert notification.raw_body == ""
        assert notification.body_sha256 == hashlib.sha256(body.encode()).hexdigest()
        assert notification.body_length == len(body.encode()) == (length or len(body.encode()))
        assert notification.body_dropped_at is not None
        assert (notification.order_id, notification.transaction_status) == (
            paid.gateway_order_id,
            "settlement",
        )
        assert (notification.gross_amount, notification.outcome) == (
            "150000.00",
            notification.outcome,
        )
    assert old_applied.outcome == "applied" and old_duplicate.outcome == "duplicate"
    for notification in kept_notifications:
        assert notification.raw_body == kept_bodies[notification.id]
        assert notification.body_dropped_at is None
    assert db.session.get(Notification, gone[0]) is None
    assert (done.payload, done.payload_dropped_at is not None, done.deliveries) == ({}, True, [])
    for message in kept_messages:
        assert message.payload["order_id"] and message.payload_dropped_at is None
    assert [d.status for d in with_dead.deliveries] == ["dead"]
    assert [d.status for m in kept_messages for d in m.deliveries] == [
        "dead",
        "pending",
        "delivered",
        "delivered",
    ]
    assert db.session.get(WorkerHeartbeat, gone[1]) is None
    assert db.session.get(WorkerHeartbeat, recent_beat.worker_id) is not None
    assert {model: count(model) for model in before} == before


def test_a_second_pass_does_nothing(app):
    payment = a_payment()
    a_notification(payment, "applied", 100 * DAY)
    a_notification(payment, "malformed", 10 * DAY)
    a_message(payment, "payment.succeeded", 100 * DAY, ("delivered", 100 * DAY))
    a_heartbeat(10 * DAY)
    db.session.commit()
    first = retention.purge(Retention())
    dropped = {n.id: n.body_dropped_at for n in db.session.scalars(sa.select(Notification))}

    second = retention.purge(Retention())

    assert first.summary == dict.fromkeys(retention.KINDS, 1)
    assert second.summary == NOTHING and second.id != first.id
    assert retention.would_purge(Retention()) == NOTHING
    db.session.expire_all()
    assert {n.id: n.body_dropped_at for n in db.session.scalars(sa.select(Notification))} == (
        dropped
    )


def test_a_pass_works_in_batches_of_its_limit_each_committed(app):
    payment = a_payment()
    for _ in range(7):
        a_notification(payment, "applied", 100 * DAY)
    for number in range(5):
        a_message(payment, f"event-{number}", 100 * DAY, ("delivered", 100 * DAY))
    db.session.commit()
    commits: list[None] = []
    updates: list[str] = []

    def committed(_session: Any) -> None:
        commits.append(None)

    def executed(state: Any) -> None:
        if state.is_update and state.bind_mapper.class_ is Notification:
            updates.append(str(state.statement))

    sa.event.listen(db.session, "after_commit", committed)
    sa.event.listen(db.session, "do_orm_execute", executed)
    try:
        assert retention.would_purge(Retention())["bodies"] == 7
        run = retention.purge(Retention(), limit=3)
    finally:
        sa.event.remove(db.session, "after_commit", committed)
        sa.event.remove(db.session, "do_orm_execute", executed)

    assert (run.summary["bodies"], run.summary["deliveries"], run.summary["payloads"]) == (7, 5, 5)
    # 3 + 3 + 1 bodies, each batch its own statement; a commit for the start and each of the
    # four slices (the last finds nothing and finishes the run).
    assert len(updates) == 3
    assert len(commits) == 5
    assert retention.would_purge(Retention()) == NOTHING


def test_the_audit_is_clean_after_a_purge_of_paid_refunded_and_expired_payments(
    app, client, midtrans_simulator
):
    made = {}
    for name in ("paid", "refunded", "expired"):
        order_id = f"ORD-{name.upper()}-{uuid.uuid4().hex[:8].upper()}"
        created = client.post("/payments", json={"order_id": order_id, "amount": 150_000})
        made[name] = uuid.UUID(created.get_json()["id"])
    for name in ("paid", "refunded"):
        settle(
            client,
            midtrans_simulator,
            db.session.get(Payment, made[name]).gateway_order_id,
            "gopay",
        )
    service.refund_payment(
        made["refunded"],
        gateway=current_gateway(),
        amount=None,
        reason="Flight canceled",
        request_key="refund-1",
    )
    assert reconcile.expire_overdue(current_gateway(), now=utcnow() + 2 * DAY) == 1
    outbox.dispatch_outbox(current_outbound())
    db.session.execute(sa.update(Delivery).values(status="delivered", delivered_at=utcnow()))
    # Everything happened half a year ago.
    long_ago = sa.literal_column("interval '180 days'")
    db.session.execute(
        sa.update(Notification).values(received_at=Notification.received_at - long_ago)
    )
    db.session.execute(
        sa.update(OutboxMessage).values(dispatched_at=OutboxMessage.dispatched_at - long_ago)
    )
    db.session.execute(sa.update(Delivery).values(delivered_at=Delivery.delivered_at - long_ago))
    db.session.commit()
    statuses = {name: db.session.get(Payment, pid).status for name, pid in made.items()}
    assert statuses == {"paid": "success", "refunded": "refunded", "expired": "expired"}

    run = retention.purge(Retention())

    assert run.summary["bodies"] >= 2 and run.summary["payloads"] >= 4, run.summary
    assert count(Delivery) == 0 and count(Refund) == 1
    result = app.test_cli_runner().invoke(args=["payments", "audit", "--full"])
    assert result.exit_code == 0, result.output
    assert "0 violation(s)" in result.output


def test_the_worker_starts_a_daily_pass_slices_it_finishes_it_and_waits_a_day(app):
    payment = a_payment()
    for _ in range(5):
        a_notification(payment, "applied", 100 * DAY)
    db.session.commit()
    start = utcnow()
    runs = sa.select(MaintenanceRun).where(PURGES)

    slices = [retention.purge_when_due(Retention(), limit=2, now=start) for _ in range(4)]

    assert slices == [2, 2, 1, 0]
    [run] = db.session.scalars(runs)
    assert (run.started_at, run.finished_at) == (start, start)
    assert run.summary == {**NOTHING, "bodies": 5}
    # Later the same day: nothing is due, even with rows come of age.
    a_notification(payment, "applied", 100 * DAY)
    db.session.commit()
    assert retention.purge_when_due(Retention(), limit=2, now=start + timedelta(hours=23)) == 0
    assert len(db.session.scalars(runs).all()) == 1
    # A day after the last pass finished, the next starts.
    assert retention.purge_when_due(Retention(), limit=2, now=start + DAY) == 1
    assert len(db.session.scalars(runs).all()) == 2


def test_a_worker_round_does_one_bounded_slice_of_the_pass(app):
    payment = a_payment()
    received = utcnow() - 100 * DAY
    db.session.execute(
        sa.insert(Notification),
        [
            {
                "received_at": received,
                "raw_body": "{}",
                "body_length": 2,
                "payment_id": payment.id,
                "order_id": payment.gateway_order_id,
                "outcome": "applied",
            }
            for _ in range(retention.BATCH + 100)
        ],
    )
    db.session.commit()

    first = worker.run_once(current_gateway(), current_outbound())
    second = worker.run_once(current_gateway(), current_outbound())
    third = worker.run_once(current_gateway(), current_outbound())

    assert (first["purged"], second["purged"], third["purged"]) == (retention.BATCH, 100, 0)
    # A full slice brings the next round at once (worker()'s rule); every job ran each round.
    assert first["purged"] >= current_app.config["WORKER_BATCH"]
    assert set(first) == {"applied", "reconciled", "expired", "dispatched", "delivered", "purged"}
    run = db.session.scalar(sa.select(MaintenanceRun).where(PURGES))
    assert run.finished_at is not None and run.summary["bodies"] == retention.BATCH + 100


def test_two_workers_racing_for_the_pass_only_one_purges(committing_app: Flask):
    with committing_app.app_context():
        payment = a_payment()
        for _ in range(4):
            a_notification(payment, "applied", 100 * DAY)
        db.session.commit()
        now = utcnow()
        other = db.engine.connect()
        try:
            # Another worker is deciding to start the pass: this one neither waits nor starts one.
            other.execute(sa.select(sa.func.pg_advisory_xact_lock(retention._START_LOCK)))
            assert retention.purge_when_due(Retention(), limit=1, now=now) == 0
            assert db.session.scalar(sa.select(sa.func.count(MaintenanceRun.id)).where(PURGES)) == 0
            other.rollback()

            assert retention.purge_when_due(Retention(), limit=1, now=now) == 1
            # Another worker holds the run for its slice: this one skips it at once.
            other.execute(sa.select(MaintenanceRun).where(PURGES).with_for_update())
            began = time.monotonic()
            assert retention.purge_when_due(Retention(), limit=1, now=now) == 0
            assert time.monotonic() - began < 5
            assert db.session.scalar(sa.select(sa.func.count(MaintenanceRun.id)).where(PURGES)) == 1
            other.rollback()
        finally:
            other.close()

        assert retention.purge_when_due(Retention(), limit=1, now=now) == 1
        run = db.session.scalar(sa.select(MaintenanceRun).where(PURGES))
        assert run.summary["bodies"] == 2


def test_two_workers_slicing_at_once_never_purge_a_row_twice(committed: Any):
    apps = [committed(), committed()]
    with apps[0].app_context():
        payment = a_payment()
        for _ in range(60):
            a_notification(payment, "applied", 100 * DAY)
        db.session.commit()
    barrier = threading.Barrier(2)
    purged: list[int] = []

    def work(app: Flask) -> None:
        with app.app_context():
            barrier.wait()
            while (done := retention.purge_when_due(Retention(), limit=7)) or not finished():
                purged.append(done)
            db.session.remove()

    def finished() -> bool:
        return bool(
            db.session.scalar(
                sa.select(sa.func.count(MaintenanceRun.id))
                .where(PURGES)
                .where(MaintenanceRun.finished_at.is_not(None))
            )
        )

    threads = [threading.Thread(target=work, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with apps[0].app_context():
        [run] = db.session.scalars(sa.select(MaintenanceRun).where(PURGES))
        assert sum(purged) == run.summary["bodies"] == 60
        dropped = sa.select(sa.func.count(Notification.id)).where(
            Notification.body_dropped_at.is_not(None)
        )
        assert db.session.scalar(dropped) == 60


def explained(query: sa.Select[Any]) -> str:
    """PostgreSQL's plan for the query, with the values it would run with."""
    connection = db.session.connection()
    rendered = query.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    rows = connection.exec_driver_sql(f"EXPLAIN {rendered}", rendered.params)
    return "\n".join(row[0] for row in rows)


@pytest.mark.slow
def test_every_purge_candidate_query_reads_its_index_not_the_table(app):
    payments = [a_payment(f"X{n}") for n in range(100)]
    db.session.flush()
    now = utcnow()

    def notification(number: int, outcome: str, age: timedelta, dropped: bool) -> dict[str, Any]:
        return {
            "received_at": now - age,
            "raw_body": "" if dropped else '{"a": 1}',
            "body_length": 8,
            "order_id": payments[number % 100].gateway_order_id,
            "payment_id": payments[number % 100].id,
            "outcome": outcome,
            "body_dropped_at": now - age + 90 * DAY if dropped else None,
        }

    # A year of history: most of it already purged, some waiting, a little refused.
    rows = [notification(n, "applied", (100 + n % 200) * DAY, True) for n in range(15_000)]
    rows += [notification(n, "duplicate", (n % 80) * DAY, False) for n in range(3_000)]
    rows += [notification(n, "applied", (91 + n % 5) * DAY, False) for n in range(300)]
    rows += [notification(n, "bad_signature", (n % 10) * DAY, False) for n in range(300)]
    rows += [notification(n, "received", timedelta(0), False) for n in range(50)]
    db.session.execute(sa.insert(Notification), rows)
    messages = [
        {
            "payment_id": payments[n % 100].id,
            "event_type": f"event-{n // 100}",
            "payload": {} if n < 9_000 else {"order_id": "x"},
            "dispatched_at": None if n >= 9_900 else now - (200 - n // 100) * DAY,
            "payload_dropped_at": now - 50 * DAY if n < 9_000 else None,
            "event_id": uuid.uuid4(),
        }
        for n in range(10_000)
    ]
    ids = db.session.scalars(
        sa.insert(OutboxMessage).returning(OutboxMessage.id, sort_by_parameter_order=True),
        messages,
    ).all()
    db.session.execute(
        sa.insert(Delivery),
        [
            {
                "message_id": message_id,
                "destination": destination,
                "url": "http://127.0.0.1:9/",
                "status": "dead" if n % 97 == 0 else "delivered",
                "delivered_at": None if n % 97 == 0 else message["dispatched_at"] + DAY,
                "next_attempt_at": now,
                "attempts": 1,
            }
            for n, (message_id, message) in enumerate(zip(ids, messages, strict=True))
            if message["dispatched_at"] is not None
            for destination in ("transaction_service", "subscriber")
        ],
    )
    db.session.execute(sa.text("ANALYZE notifications, outbox, deliveries"))
    cutoffs = Retention().cutoffs(now)

    plans = {
        kind: explained(
            retention.candidates(kind, cutoffs[kind])
            .limit(retention.BATCH)
            .with_for_update(skip_locked=True)
        )
        for kind in retention.KINDS
    }

    for kind, plan in plans.items():
        assert not re.search(r"Seq Scan on (notifications|outbox|deliveries)\b", plan), (
            kind,
            plan,
        )
    assert "ix_notifications_body_kept" in plans["bodies"], plans["bodies"]
    assert "ix_notifications_unapplied" in plans["rejected"], plans["rejected"]
    assert "ix_deliveries_delivered" in plans["deliveries"], plans["deliveries"]
    assert "ix_outbox_payload_kept" in plans["payloads"], plans["payloads"]


@pytest.mark.parametrize(
    "name",
    [
        "NOTIFICATION_BODY_RETENTION_DAYS",
        "OUTBOX_RETENTION_DAYS",
        "HEARTBEAT_RETENTION_DAYS",
        "REJECTED_RETENTION_DAYS",
    ],
)
@pytest.mark.parametrize("days", ["0", "-3", "nan"])
def test_a_retention_of_no_days_is_refused(name, days):
    with pytest.raises(ConfigError, match=f"{name}=.*greater than 0"):
        validate(from_environ({name: days}, "/srv/instance"))


def test_the_retention_defaults_and_settings():
    assert Retention.from_config(from_environ({}, "/srv/instance")) == Retention(
        bodies=90 * DAY, rejected=7 * DAY, outbox=90 * DAY, heartbeats=7 * DAY
    )
    config = from_environ({"NOTIFICATION_BODY_RETENTION_DAYS": "30.5"}, "/srv/instance")
    validate(config)
    assert Retention.from_config(config).bodies == timedelta(days=30.5)


def test_the_purge_command_counts_with_dry_run_then_purges_and_records_the_pass(app):
    payment = a_payment()
    a_notification(payment, "applied", 100 * DAY)
    a_heartbeat(30 * DAY)
    db.session.commit()
    runner = app.test_cli_runner()

    dry = runner.invoke(args=["payments", "purge", "--dry-run"])

    assert dry.exit_code == 0, dry.output
    assert re.search(r"^bodies\s+1\s", dry.output, re.M) and "nothing changed" in dry.output
    assert db.session.scalar(sa.select(sa.func.count(MaintenanceRun.id)).where(PURGES)) == 0
    assert retention.would_purge(Retention())["bodies"] == 1

    real = runner.invoke(args=["payments", "purge"])

    assert real.exit_code == 0, real.output
    assert re.search(r"^bodies\s+1\s", real.output, re.M)
    assert re.search(r"^heartbeats\s+1\s", real.output, re.M)
    run = db.session.scalar(sa.select(MaintenanceRun).where(PURGES))
    assert (run.job, run.summary["bodies"], run.finished_at is not None) == ("purge", 1, True)
    assert retention.would_purge(Retention()) == NOTHING


def test_the_ops_page_says_when_a_body_and_a_payload_were_dropped(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "OPS_USERS", [STAFF])
    limiter.reset()
    payment = a_payment()
    old = a_notification(payment, "applied", 100 * DAY)
    recent = a_notification(payment, "duplicate", 10 * DAY)
    a_message(payment, "payment.succeeded", 100 * DAY, ("delivered", 100 * DAY))
    db.session.commit()
    body = old.raw_body
    retention.purge(Retention())
    log_in(client)

    page = client.get(f"/ops/payments/{payment.id}").text

    article = re.search(rf'id="notification-{old.id}".*?</article>', page, re.S).group(0)
    assert "dropped by retention" in article
    assert hashlib.sha256(body.encode()).hexdigest() in article
    assert "Raw body</summary>" not in article
    kept = re.search(rf'id="notification-{recent.id}".*?</article>', page, re.S).group(0)
    assert "dropped" not in kept and recent.raw_body in html.unescape(kept)
    messages = re.search(r'id="messages".*?</section>', page, re.S).group(0)
    assert "Payload dropped by retention" in messages
