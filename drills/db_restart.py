"""Database restart mid-load: creates and notifications keep coming while PostgreSQL restarts.

    python -m drills.db_restart [--clients 6] [--seconds 30] [--restarts fast,immediate] [--down 3]

Clients create payments through `POST /payments`, retrying a 503 with the same order id as the
transaction service would; payers pay each created payment at the simulator a moment later, so
that notifications keep arriving while the database is down. The simulator delivers them with
Midtrans's retry rules (503: four more times, over a schedule compressed by `--time-scale`), and
the drill posts each payment's signed notification itself too, asking again after a 5xx or no
answer as Midtrans would. Meanwhile the drill restarts the private cluster: `fast` rolls sessions
back, `immediate` is a crash with recovery. Nothing restarts the service or the workers: they
have to recover by themselves, the workers listening for new notifications again (LISTEN), and
every stored notification is applied before the drill checks.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from drills.cli import run_drill
from drills.harness import Stack, call, new_payment, stack, wait_until
from drills.report import Check, Result

# What each paid payment is told by the simulator, and the status that must follow.
OUTCOMES = (
    ("settlement", "success"),
    ("pending", "pending"),
    ("settlement", "success"),
    ("deny", "failed"),
    ("expire", "expired"),
    ("cancel", "canceled"),
)
# A create must be answered well within the caller's own timeout.
ANSWER_WITHIN = 10.0
# Answers after which the transaction service asks again with the same order id: the database
# is down, or an earlier try was cut off mid-create (409 "being created; retry shortly").
RETRY = (503, 409)
# Paying a moment after the create keeps notifications in flight when the database goes down.
PAY_AFTER = 1.0
# How the drill asks again after a 5xx, as Midtrans would (compressed): first wait, longest wait.
RESEND_FIRST, RESEND_MAX = 0.25, 2.0
# Logged by a worker whose LISTEN connection went with the database (tiketq/wakeup.py).
LISTENER_LOST = "inbox listener lost"


@dataclass(frozen=True)
class Options:
    """How much load, which restarts, and how long to wait for everything to settle."""

    clients: int = 6
    seconds: float = 30.0
    restarts: tuple[str, ...] = ("fast", "immediate")
    down: float = 3.0
    time_scale: float = 0.02
    retry_for: float = 20.0
    patience: float = 240.0


@dataclass(frozen=True)
class Create:
    """One `POST /payments` and its answer."""

    order_id: str
    began: float
    seconds: float
    status: int | str
    payment_id: str | None = None
    gateway_order_id: str | None = None


@dataclass(frozen=True)
class Outage:
    """One restart of the cluster: when it went down, when it accepted connections again, and
    how long after that every worker was listening for new notifications again (None: never)."""

    mode: str
    began: float
    back: float
    relisten: float | None = None


@dataclass(frozen=True)
class Posted:
    """One notification the drill posted itself: every answer, until a 2xx or it gave up."""

    order_id: str
    codes: tuple[int | str, ...]

    @property
    def delivered(self) -> bool:
        """Whether it ended with a 2xx."""
        return isinstance(self.codes[-1], int) and 200 <= self.codes[-1] < 300

    @property
    def refused(self) -> bool:
        """Whether an outage answered it 5xx (or not at all) first."""
        return any(not isinstance(c, int) or c >= 500 for c in self.codes)


@dataclass
class Load:
    """What the clients did, shared between their threads."""

    creates: list[Create] = field(default_factory=list)
    expected: dict[str, str] = field(default_factory=dict)
    unpaid: queue.Queue = field(default_factory=queue.Queue)
    stop: threading.Event = field(default_factory=threading.Event)
    posted: list[Posted] = field(default_factory=list)


def run(options: Options) -> Result:
    """Bring up a private stack, restart its database under load, check what it left behind."""
    with stack(workers=2, time_scale=options.time_scale) as running:
        return drill(running, options)


def drill(s: Stack, options: Options) -> Result:
    """Run the load and the restarts against a running stack; measurements and checks."""
    began = time.monotonic()
    load = Load()
    with (
        ThreadPoolExecutor(options.clients * 2) as pool,
        ThreadPoolExecutor(options.clients * 2) as senders,
    ):
        clients = [pool.submit(_client, s, n, load, options) for n in range(options.clients)]
        payers = [pool.submit(_payer, s, load, senders, options) for _ in range(options.clients)]
        outages = _restart(s, options, began)
        load.stop.set()
        for future in [*clients, *payers]:
            future.result()
    load_seconds = time.monotonic() - began
    drained = s.drain_notifications(options.patience)
    deliveries = s.control("GET", "/notifications")
    assert isinstance(deliveries, list)
    inbox_drained = s.drain_inbox(options.patience)
    arrived = _await_confirmations(s, load, options.patience)
    states = dict(s.query("SELECT id::text, status FROM payments"))
    by_gateway = {c.gateway_order_id: c.payment_id for c in load.creates if c.status == 201}
    codes = Counter(str(c.status) for c in load.creates)
    rows = [
        ("load", f"{options.clients} clients for {load_seconds:.1f} s"),
        ("creates", ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))),
        ("outages", ", ".join(_outage_summary(o) for o in outages)),
        ("notifications", _delivery_summary(deliveries)),
        ("posted by the drill", _posted_summary(load.posted)),
        ("inbox outcomes", ", ".join(f"{k} {v}" for k, v in sorted(s.inbox_outcomes().items()))),
        ("arrival to applied", s.arrival_to_applied()),
        ("total time", f"{time.monotonic() - began:.1f} s"),
    ]
    checks = [
        _outage_answers(load.creates, outages),
        _recovered(load.creates, outages),
        _creates_exist(load.creates, states),
        _retried(load.creates),
        _notifications(deliveries, drained, by_gateway, load.expected, states, applied=True),
        _notifications(deliveries, drained, by_gateway, load.expected, states, applied=False),
        _posted(load.posted, by_gateway, load.expected, states),
        s.inbox_check(inbox_drained),
        _listening(s, outages),
        s.audit(),
        _confirmations(s, load, arrived),
    ]
    return Result("Database restart mid-load", rows, checks)


def _client(s: Stack, number: int, load: Load, options: Options) -> None:
    """Create payments one after another until told to stop; queue each created one for paying."""
    for n in range(1_000_000):
        if load.stop.is_set():
            return
        order_id = f"RESTART-{number}-{n:05d}"
        created = _create(s, order_id, 100_000 + 500 * n, load, options.retry_for)
        if created is not None:
            outcome, status = OUTCOMES[(number + n) % len(OUTCOMES)]
            load.expected[created.payment_id or ""] = status
            load.unpaid.put((time.monotonic() + PAY_AFTER, created.gateway_order_id, outcome))


def _create(s: Stack, order_id: str, amount: int, load: Load, retry_for: float) -> Create | None:
    """Create one payment, asking again with the same order id while told to; the 201, if any."""
    give_up = time.monotonic() + retry_for
    while True:
        began = time.monotonic()
        try:
            status, answer = call(
                "POST",
                f"{s.service_url}/payments",
                new_payment(order_id, amount, "bank_transfer"),
                timeout=60,
            )
        except OSError as exc:
            status, answer = type(exc).__name__, None
        done = Create(order_id, began, time.monotonic() - began, status)
        if status == 201 and isinstance(answer, dict):
            done = Create(
                order_id, began, done.seconds, 201, answer["id"], answer["gateway_order_id"]
            )
        load.creates.append(done)
        if status not in RETRY or time.monotonic() > give_up:
            return done if status == 201 else None
        # As the answers ask: soon while the database is down, later while a create is cut off.
        time.sleep(0.2 if status == 503 else 2.0)


def _payer(s: Stack, load: Load, senders: ThreadPoolExecutor, options: Options) -> None:
    """Pay queued payments at the simulator once they are due, until stopped and none is left;
    post each one's signed notification ourselves too."""
    while not (load.stop.is_set() and load.unpaid.empty()):
        try:
            due, gateway_order_id, outcome = load.unpaid.get(timeout=0.2)
        except queue.Empty:
            continue
        time.sleep(max(0.0, due - time.monotonic()))
        s.control(
            "POST",
            f"/transactions/{gateway_order_id}/pay",
            {"method": "bca_va", "outcome": outcome},
        )
        body = s.control("GET", f"/transactions/{gateway_order_id}/notification")
        senders.submit(_resend, s, gateway_order_id, body, load, options.retry_for)


def _resend(s: Stack, order_id: str, body: object, load: Load, retry_for: float) -> None:
    """POST a notification until it is answered 2xx, as Midtrans retries, or give up."""
    give_up = time.monotonic() + retry_for
    codes: list[int | str] = []
    wait = RESEND_FIRST
    while True:
        try:
            status: int | str = call("POST", f"{s.service_url}/payments/webhook", body)[0]
        except OSError as exc:
            status = type(exc).__name__
        codes.append(status)
        answered = isinstance(status, int) and status < 500
        if answered or time.monotonic() > give_up:
            break
        time.sleep(wait)
        wait = min(wait * 2, RESEND_MAX)
    load.posted.append(Posted(order_id, tuple(codes)))


def _restart(s: Stack, options: Options, began: float) -> list[Outage]:
    """Restart the cluster at even intervals of the load, then let the load run out."""
    outages = []
    gap = options.seconds / (len(options.restarts) + 1)
    workers = set(s.listeners())
    for number, mode in enumerate(options.restarts, start=1):
        time.sleep(max(0.0, began + gap * number - time.monotonic()))
        down = time.monotonic()
        s.cluster.restart(mode, options.down)
        back = time.monotonic()
        # Every worker's LISTEN session went with the server: each must listen again by itself.
        listening = s.await_listeners(workers, timeout=30.0)
        outages.append(Outage(mode, down, back, time.monotonic() - back if listening else None))
    time.sleep(max(0.0, began + options.seconds - time.monotonic()))
    return outages


def _outage_summary(outage: Outage) -> str:
    again = "never" if outage.relisten is None else f"{outage.relisten:.1f} s later"
    return f"{outage.mode} {outage.back - outage.began:.1f} s (workers listening again {again})"


def _posted_summary(posted: list[Posted]) -> str:
    codes = Counter(str(c) for p in posted for c in p.codes)
    answers = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))
    refused = sum(p.refused for p in posted)
    return f"{len(posted)} in {codes.total()} attempts ({answers}); {refused} saw a 5xx"


def _posted(
    posted: list[Posted],
    by_gateway: dict[str | None, str | None],
    expected: dict[str, str],
    states: dict[str, str],
) -> Check:
    """What the drill posted and was answered 5xx during an outage, it sent again until stored;
    each such payment ended where it must."""
    hit = [p for p in posted if p.refused]
    wrong = [
        f"{p.order_id} {p.codes[-1]} {states.get(by_gateway.get(p.order_id) or '')}"
        for p in hit
        if not p.delivered
        or states.get(by_gateway.get(p.order_id) or "")
        != expected.get(by_gateway.get(p.order_id) or "")
    ]
    undelivered = sum(not p.delivered for p in posted)
    return Check(
        bool(hit) and not wrong and not undelivered,
        f"{len(hit) - len(wrong)}/{len(hit)} notifications the drill posted into an outage were "
        f"answered 2xx on a retry and applied; {undelivered}/{len(posted)} never answered 2xx"
        f"{': ' + '; '.join(wrong[:5]) if wrong else ''}",
    )


def _listening(s: Stack, outages: list[Outage]) -> Check:
    """The workers lost their LISTEN connection with each restart and listened again."""
    workers = len(s.workers)
    lost = s.worker_logs().count(LISTENER_LOST)
    now = s.listeners()
    again = [o.relisten for o in outages]
    shown = ", ".join("never" if t is None else f"{t:.1f} s" for t in again)
    return Check(
        bool(outages)
        and None not in again
        and sum(now.values()) == len(now) == workers
        and lost >= workers * len(outages),
        f"{len(now)}/{workers} workers listening (LISTEN tiketq_inbox, one session each) at the "
        f"end; after each restart all listened again ({shown} after the database was back); "
        f"{lost} lost listeners logged for {workers} workers x {len(outages)} restarts",
    )


def _await_confirmations(s: Stack, load: Load, timeout: float) -> bool:
    """Wait until the workers confirmed every payment that must have succeeded."""
    return wait_until(lambda: _paid_orders(load) <= set(s.receiver.confirmations()), timeout)


def _paid_orders(load: Load) -> set[str]:
    paid = {pid for pid, status in load.expected.items() if status == "success"}
    return {c.order_id for c in load.creates if c.payment_id in paid}


def _delivery_summary(deliveries: list) -> str:
    attempts = Counter(str(a["response_code"]) for d in deliveries for a in d["history"])
    hit = sum(any(_is_5xx(a) for a in d["history"]) for d in deliveries)
    answers = ", ".join(f"{code}: {n}" for code, n in sorted(attempts.items()))
    return f"{len(deliveries)} sent in {attempts.total()} attempts ({answers}); {hit} saw a 5xx"


def _is_5xx(attempt: dict) -> bool:
    return (attempt["response_code"] or 0) >= 500


def _overlaps(create: Create, outages: list[Outage]) -> bool:
    return any(create.began <= o.back and o.began <= create.began + create.seconds for o in outages)


def _outage_answers(creates: list[Create], outages: list[Outage]) -> Check:
    """Creates hit by an outage get a quick 503, never a hang, a 500 or no answer."""
    refused = {c.order_id for c in creates if c.status == 503}
    # A 409 is right only for an order whose earlier try was cut off mid-create.
    odd = Counter(
        str(c.status)
        for c in creates
        if c.status not in (201, 503) and not (c.status == 409 and c.order_id in refused)
    )
    slowest = max((c.seconds for c in creates), default=0.0)
    return Check(
        bool(refused) and not odd and slowest < ANSWER_WITHIN and len(outages) > 0,
        f"{sum(c.status == 503 for c in creates)} creates hit by the outages answered 503; "
        f"otherwise 201, or 409 for a create cut off mid-way (others: {dict(odd) or 'none'}); "
        f"slowest answer {slowest:.2f} s (limit {ANSWER_WITHIN:.0f} s)",
    )


def _recovered(creates: list[Create], outages: list[Outage]) -> Check:
    """Once the database is back, the very first requests succeed: no stale connection is used."""
    after = [
        c for c in creates if any(c.began > o.back for o in outages) and not _overlaps(c, outages)
    ]
    failed = [c for c in after if not isinstance(c.status, int) or c.status >= 500]
    return Check(
        bool(after) and not failed,
        f"the service recovered by itself: {len(failed)} of {len(after)} creates after the "
        f"database was back failed (5xx or no answer)",
    )


def _creates_exist(creates: list[Create], states: dict[str, str]) -> Check:
    created = [c for c in creates if c.status == 201]
    missing = [c.order_id for c in created if c.payment_id not in states]
    return Check(
        bool(created) and not missing,
        f"{len(created) - len(missing)}/{len(created)} payments answered 201 exist"
        f"{': missing ' + ', '.join(missing[:5]) if missing else ''}",
    )


def _retried(creates: list[Create]) -> Check:
    """An order refused with 503 is created when the transaction service asks again."""
    refused = {c.order_id for c in creates if c.status == 503}
    created = {c.order_id for c in creates if c.status == 201}
    last = {c.order_id: c.status for c in creates}
    # Cut off mid-create: 409 until the attempt counts as abandoned, a minute after it began.
    in_flight = {order for order in refused - created if last[order] == 409}
    stuck = sorted(refused - created - in_flight)
    return Check(
        bool(refused) and not stuck,
        f"{len(refused & created)}/{len(refused)} orders refused with 503 were created on a "
        f"retry, {len(in_flight)} still being created (409) when the client gave up"
        f"{'; stuck: ' + ', '.join(stuck[:5]) if stuck else ''}",
    )


def _notifications(
    deliveries: list,
    drained: bool,
    by_gateway: dict[str | None, str | None],
    expected: dict[str, str],
    states: dict[str, str],
    *,
    applied: bool,
) -> Check:
    """Every notification answered 2xx (or, if hit by the outage, 5xx then 2xx) is applied."""
    chosen = [d for d in deliveries if any(_is_5xx(a) for a in d["history"]) is not applied]
    wrong = []
    for delivery in chosen:
        payment_id = by_gateway.get(delivery["order_id"]) or ""
        if delivery["status"] != "delivered" or states.get(payment_id) != expected.get(payment_id):
            wrong.append(f"{delivery['order_id']} {delivery['status']} {states.get(payment_id)}")
    what = "answered 2xx" if applied else "answered 5xx during an outage"
    how = "applied" if applied else "delivered and applied on a retry"
    return Check(
        drained and bool(chosen) and not wrong,
        f"{len(chosen) - len(wrong)}/{len(chosen)} notifications {what} {how}"
        f"{': not ' + '; '.join(wrong[:5]) if wrong else ''}",
    )


def _confirmations(s: Stack, load: Load, arrived: bool) -> Check:
    """The workers came through too: still running, each success confirmed, announced once."""
    paid = _paid_orders(load)
    announced = s.query(
        "SELECT p.order_id, count(*) FROM outbox o JOIN payments p ON p.id = o.payment_id"
        " WHERE o.event_type = 'payment.succeeded' GROUP BY p.order_id"
    )
    twice = [order for order, n in announced if n != 1]
    missing = paid - set(s.receiver.confirmations())
    alive = sum(worker.poll() is None for worker in s.workers)
    return Check(
        arrived
        and bool(paid)
        and not missing
        and not twice
        and len(announced) == len(paid)
        and alive == len(s.workers),
        f"{alive}/{len(s.workers)} workers still running; {len(paid) - len(missing)}/{len(paid)} "
        f"successes confirmed to the transaction service, {len(announced)} payment.succeeded "
        f"messages, none twice",
    )


HELP = {
    "clients": "concurrent clients creating payments",
    "seconds": "load duration",
    "restarts": "comma-separated pg_ctl stop modes: fast, immediate",
    "down": "seconds the database stays down each time",
    "time_scale": "the simulator's retry schedule multiplier",
    "retry_for": "seconds a client keeps asking again for one order",
    "patience": "how long to wait for retries and deliveries to settle",
}


def main(argv: list[str] | None = None) -> int:
    """Run the drill from the command line: exit 0, 1 (a check failed) or 2 (no stack)."""
    return run_drill("drills.db_restart", __doc__ or "", Options, run, HELP, argv)


if __name__ == "__main__":
    raise SystemExit(main())
