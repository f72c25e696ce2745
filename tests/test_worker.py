"""The worker with real commits: woken by NOTIFY, stopped by SIGTERM, never stopped by one row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.config import CLIENT_KEY, SERVER_KEY, TEST_DATABASE_URL
from tests.support.midtrans import notification
from tests.support.payments import open_payment, poison
from tiketq import worker
from tiketq.extensions import db
from tiketq.gateway import current_gateway
from tiketq.outbound import TRANSACTION_SERVICE, Outbound, current_outbound
from tiketq.payments import notifications, outbox, reconcile
from tiketq.payments.models import (
    Delivery,
    Notification,
    OutboxMessage,
    Payment,
    utcnow,
    work_failed,
)
from tiketq.wakeup import Wakeup

# Every test runs worker rounds or a worker process on real commits.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# Generous for a busy 2-core machine; a quiet one needs a second or two for each.
START_SECONDS = 60
APPLY_SECONDS = 60
STOP_SECONDS = 30
# Settings of the test runner's environment that would point the worker somewhere else.
CONFIGURING = ("DATABASE_URL", "POSTGRES_", "MIDTRANS_", "PROMETHEUS_", "WORKER_", "PG")
AMOUNT = 150_000


class WorkerProcess:
    """`flask --app wsgi payments worker` on the test database and simulator, its log read live."""

    def __init__(self, simulator_url: str) -> None:
        # libpq names the worker's connections, so that the test can find its listener.
        self.name = f"tiketq-worker-test-{uuid.uuid4().hex[:8]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIGURING)}
        env.update(
            DATABASE_URL=TEST_DATABASE_URL,
            MIDTRANS_SERVER_KEY=SERVER_KEY,
            MIDTRANS_CLIENT_KEY=CLIENT_KEY,
            MIDTRANS_SIMULATOR="true",
            MIDTRANS_BASE_URL=simulator_url,
            MIDTRANS_BREAKER_FAILURES="0",
            # Neither a round nor a poll can come in time: only a NOTIFY wakes it early.
            WORKER_INTERVAL="600",
            WORKER_INBOX_POLL="600",
            # Nothing listens there: a confirmation fails at once and harms nobody.
            TRANSACTION_SERVICE_URL="http://127.0.0.1:9",
            SECRET_KEY="worker-test",
            METRICS_ENABLED="false",
            PGAPPNAME=self.name,
        )
        flask = Path(sys.executable).parent / "flask"
        self.records: list[dict] = []
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self.process = subprocess.Popen(
            [str(flask), "--app", "wsgi", "payments", "worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                if isinstance(record, dict):
                    self.records.append(record)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def logged(self, message: str) -> bool:
        with self._changed:
            return any(record.get("message") == message for record in self.records)

    def wait_for_log(self, message: str, timeout: float) -> None:
        """Until the worker logs `message`; fails if it ends or the timeout passes first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(r.get("message") == message for r in self.records):
                remaining = deadline - time.monotonic()
                if self._ended or remaining <= 0:
                    pytest.fail(f"the worker never logged {message!r}:\n" + "\n".join(self.lines))
                self._changed.wait(remaining)

    def wait_until_listening(self, timeout: float) -> None:
        """Until the worker's connection has run LISTEN (what PostgreSQL shows of it)."""
        engine = sa.create_engine(TEST_DATABASE_URL, poolclass=sa.pool.NullPool)
        deadline = time.monotonic() + timeout
        try:
            with engine.connect() as connection:
                while True:
                    listening = connection.scalar(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE application_name = :name AND query ILIKE 'LISTEN %'"
                        ),
                        {"name": self.name},
                    )
                    connection.rollback()
                    if listening:
                        return
                    assert time.monotonic() < deadline and self.process.poll() is None, (
                        "the worker never listened:\n" + self.output()
                    )
                    time.sleep(0.1)
        finally:
            engine.dispose()

    def terminate(self) -> tuple[int, float]:
        """SIGTERM, then its exit code and how long it took to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not stop within {STOP_SECONDS} s:\n" + self.output())
        took = time.monotonic() - started
        self._reader.join(STOP_SECONDS)
        return code, took

    def kill(self) -> None:
        """Leave nothing running or open, however the test went."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_SECONDS)
        self._reader.join(STOP_SECONDS)
        self.process.stdout.close()


@pytest.fixture
def worker_process(committed, midtrans_simulator) -> Iterator[WorkerProcess]:
    """A started worker (after `committed`, so it is stopped before the tables are truncated)."""
    running = WorkerProcess(midtrans_simulator.url)
    try:
        running.wait_for_log("worker started", START_SECONDS)
        yield running
    finally:
        running.kill()


def status_of(app, payment: Payment) -> str:
    with app.app_context():
        try:
            return db.session.scalar(sa.select(Payment.status).where(Payment.id == payment.id))
        finally:
            db.session.remove()


def notify(app, simulator, payment: Payment) -> None:
    body = simulator.notification(payment.gateway_order_id)
    response = app.test_client().post("/payments/webhook", json=body)
    assert response.status_code == 200 and response.get_json()["outcome"] == "accepted"


def wait_for_status(app, payment: Payment, wanted: str, timeout: float, running) -> float:
    """Seconds until the payment has `wanted`; polls the database, fails at the deadline."""
    started = time.monotonic()
    while status_of(app, payment) != wanted:
        assert time.monotonic() - started < timeout and running.process.poll() is None, (
            f"the payment never became {wanted}:\n" + running.output()
        )
        time.sleep(0.1)
    return time.monotonic() - started


# The worker process: LISTEN, SIGTERM.


def test_a_stored_notification_wakes_the_worker_at_once(
    worker_process, committing_app, midtrans_simulator
):
    worker_process.wait_until_listening(START_SECONDS)
    for _ in range(2):
        # The second is stored while the worker sleeps in its wait: only the NOTIFY wakes it.
        payment = open_payment(committing_app)
        midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "settlement")
        notify(committing_app, midtrans_simulator, payment)
        waited = wait_for_status(committing_app, payment, "success", APPLY_SECONDS, worker_process)
        # Far below the 600 s poll and round that would otherwise have applied it.
        assert waited < APPLY_SECONDS

    code, _took = worker_process.terminate()
    assert code == 0, worker_process.output()
    assert worker_process.logged("worker stopped")


def test_sigterm_stops_an_idle_worker_promptly(worker_process):
    worker_process.wait_until_listening(START_SECONDS)

    code, took = worker_process.terminate()

    assert code == 0, worker_process.output()
    assert took < STOP_SECONDS
    assert worker_process.logged("worker stopped")


def test_the_wakeup_answers_a_new_listen_a_stored_notification_and_a_stop(committing_app):
    with committing_app.app_context():
        wakeup = Wakeup(db.engine)
        try:
            # What was stored before it listened notified nobody: its caller looks once.
            assert wakeup.wait(START_SECONDS) is True
            assert wakeup.wait(0.2) is False

            body = notification(f"ORD-{uuid.uuid4().hex[:12].upper()}", "settlement")
            assert (
                committing_app.test_client().post("/payments/webhook", json=body).status_code == 200
            )
            # True only if woken: a timeout is False.
            assert wakeup.wait(APPLY_SECONDS) is True

            wakeup.stop()
            assert wakeup.wait(APPLY_SECONDS) is True and wakeup.stopped()
        finally:
            wakeup.close()
            db.session.remove()


# A poison row: its job goes on with the others.


@pytest.fixture
def failures() -> Iterator[list[str]]:
    """The jobs that reported a row as failed, through the work_failed signal."""
    seen: list[str] = []

    def count(job: str, **_kwargs) -> None:
        seen.append(job)

    work_failed.connect(count)
    yield seen
    work_failed.disconnect(count)


def inbox_rows(app, payment: Payment) -> list[Notification]:
    with app.app_context():
        rows = list(
            db.session.scalars(
                sa.select(Notification).where(Notification.order_id == payment.gateway_order_id)
            )
        )
        db.session.expunge_all()
        return rows


def test_a_round_with_a_poison_inbox_row_still_dispatches_and_delivers_the_rest(
    worker_app, midtrans_simulator, receiver, monkeypatch, failures
):
    bad, good = open_payment(worker_app), open_payment(worker_app)
    for payment in (bad, good):
        midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "settlement")
        notify(worker_app, midtrans_simulator, payment)
    poison(monkeypatch, notifications, "apply_answer", bad)

    with worker_app.app_context():
        done = worker.run_once(current_gateway(), current_outbound())

    assert done["applied"] == 2
    # The healthy order's confirmation and event went out in the same round.
    assert (done["dispatched"], done["delivered"]) == (1, 2)
    assert status_of(worker_app, good) == "success"
    assert sorted(r.path for r in receiver.received) == sorted(
        [f"/transactions/payments/{good.order_id}/confirm", "/user-service/payment-events"]
    )
    [row] = inbox_rows(worker_app, bad)
    assert (row.outcome, row.attempts) == ("failed", 1)
    assert "ValueError: poison" in row.last_error and row.next_attempt_at > utcnow()
    assert status_of(worker_app, bad) == "pending"
    assert failures == ["inbox"]

    # The command does the same, and ends well, while the poison row waits for its retry.
    later = open_payment(worker_app)
    midtrans_simulator.pay(later.gateway_order_id, "bca_va", "settlement")
    notify(worker_app, midtrans_simulator, later)
    result = worker_app.test_cli_runner().invoke(args=["payments", "worker", "--once"])
    assert result.exit_code == 0, result.output
    assert status_of(worker_app, later) == "success"
    assert f"/transactions/payments/{later.order_id}/confirm" in [r.path for r in receiver.received]


def test_a_delivery_that_raises_is_a_failed_attempt_and_the_others_are_delivered(
    worker_app, midtrans_simulator, receiver, monkeypatch, failures
):
    bad, good = open_payment(worker_app), open_payment(worker_app)
    for payment in (bad, good):
        midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "settlement")
        notify(worker_app, midtrans_simulator, payment)
    with worker_app.app_context():
        notifications.apply_waiting(current_gateway())
        outbox.dispatch_outbox(current_outbound())
    real = Outbound.send

    def send(self, destination, url, event_id, payload):
        if destination == TRANSACTION_SERVICE and payload["order_id"] == bad.order_id:
            raise RuntimeError("cannot build the confirmation")
        return real(self, destination, url, event_id, payload)

    monkeypatch.setattr(Outbound, "send", send)
    now = utcnow()
    with worker_app.app_context():
        assert outbox.deliver_due(current_outbound(), now=now) == 4
        deliveries = {
            (d.message.payload["order_id"], d.destination): d
            for d in db.session.scalars(sa.select(Delivery))
        }
        broken = deliveries.pop((bad.order_id, TRANSACTION_SERVICE))
        assert (broken.status, broken.attempts) == ("pending", 1)
        assert broken.last_error == "RuntimeError: cannot build the confirmation"
        assert broken.next_attempt_at > now
        assert {d.status for d in deliveries.values()} == {"delivered"}
        assert len(deliveries) == 3
    assert failures == ["delivery"]
    assert f"/transactions/payments/{good.order_id}/confirm" in [r.path for r in receiver.received]


def test_a_reconcile_that_raises_checks_that_payment_later_and_the_others_now(
    worker_app, midtrans_simulator, monkeypatch, failures
):
    payments = [open_payment(worker_app) for _ in range(3)]
    bad = payments[1]
    now = utcnow()
    with worker_app.app_context():
        for payment in payments:
            midtrans_simulator.pay(payment.gateway_order_id, "gopay", "settlement")
            db.session.execute(
                sa.update(Payment)
                .where(Payment.id == payment.id)
                .values(next_check_at=now - timedelta(seconds=1))
            )
        db.session.commit()
    poison(monkeypatch, reconcile, "apply_answer", bad)

    with worker_app.app_context():
        assert reconcile.reconcile_due(current_gateway(), now=now) == 3
        checked = {p.id: db.session.get(Payment, p.id) for p in payments}
        assert [checked[p.id].status for p in payments] == ["success", "pending", "success"]
        pushed = checked[bad.id]
        assert pushed.checks == 1
        assert pushed.next_check_at == now + notifications.retry_delay(1)
        # Not due again in this round's time: the next round asks about the others first.
        assert reconcile.reconcile_due(current_gateway(), now=now) == 0
    assert failures == ["reconcile"]


# Several orders at once: each waits for Midtrans in a session of its own.


def test_orders_applied_in_threads_each_cost_one_call_and_one_confirmation(
    committing_app, midtrans_simulator
):
    payments = [open_payment(committing_app) for _ in range(8)]
    for payment in payments:
        midtrans_simulator.pay(payment.gateway_order_id, "bca_va", "settlement")
        notify(committing_app, midtrans_simulator, payment)
        notify(committing_app, midtrans_simulator, payment)
    midtrans_simulator.reset_calls()
    # Slow answers make the threads overlap, as a real Midtrans does.
    midtrans_simulator.fault(delay_seconds=0.3, operations=["core.status"])

    with committing_app.app_context():
        handled = notifications.apply_waiting(current_gateway(), threads=4)

    assert handled == 16
    assert {status_of(committing_app, p) for p in payments} == {"success"}
    assert midtrans_simulator.calls("core.status") == 8
    with committing_app.app_context():
        confirmations = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.event_type == "payment.succeeded")
        )
    assert confirmations == 8
