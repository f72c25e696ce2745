"""Notification storm: duplicates, replays and out-of-order delivery for hundreds of payments.

    python -m drills.storm [--payments 300] [--parallel 4] [--duplicates 2] [--seconds 300]

Every payment is created through `POST /payments` and follows a plan whose final state is known
in advance. The simulator sends each of its notifications 1 + duplicates times, newest first,
and replays the current state once mid-storm; meanwhile the drill posts the same signed bodies
itself, `parallel` copies of each, shuffled, so that several requests for one payment are in
flight at once and a settlement may arrive before its pending. The storm ends with Midtrans's
last word: one more replay of every transaction's current state, as its retries would bring.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from drills.cli import run_drill
from drills.harness import Stack, call, new_payment, stack, wait_until
from drills.report import Check, Result

# Simulator calls made at once; more only queue behind its single SQLite writer.
DRIVERS = 8


@dataclass(frozen=True)
class Plan:
    """How a payment is paid at the simulator, where that must leave it, and what it announces."""

    name: str
    payment_method: str
    pay: tuple[str, str]
    then: str | None
    expected: str
    announced: tuple[str, ...]


PLANS = (
    Plan("settlement", "bank_transfer", ("bca_va", "pending"), "settlement", "success",
         ("payment.succeeded",)),
    Plan("capture", "credit_card", ("credit_card", "capture"), "settlement", "success",
         ("payment.succeeded",)),
    Plan("refund", "e_wallet", ("gopay", "settlement"), "refund", "refunded",
         ("payment.refunded", "payment.succeeded")),
    Plan("expire", "bank_transfer", ("bni_va", "pending"), "expire", "expired",
         ("payment.expired",)),
    Plan("cancel", "bank_transfer", ("permata_va", "pending"), "cancel", "canceled",
         ("payment.canceled",)),
    Plan("deny", "e_wallet", ("shopeepay", "pending"), "deny", "failed", ("payment.failed",)),
    Plan("pending", "retail", ("indomaret", "pending"), None, "pending", ()),
)  # fmt: skip
PAID = {"success", "refunded"}


@dataclass(frozen=True)
class Options:
    """How big the storm is and how long to wait for it to settle."""

    payments: int = 300
    parallel: int = 4
    duplicates: int = 2
    seconds: float = 300.0
    senders: int = 16
    seed: int = 7


@dataclass(frozen=True)
class Payment:
    """A payment the service created, and its plan."""

    payment_id: str
    order_id: str
    gateway_order_id: str
    plan: Plan


def run(options: Options) -> Result:
    """Bring up a private stack, run the storm against it, check what it left behind."""
    with stack(workers=2) as running:
        return storm(running, options)


def storm(s: Stack, options: Options) -> Result:
    """Run the storm against a running stack; measurements and checks."""
    began = time.monotonic()
    payments, create_codes = _create_all(s, options)
    s.control("POST", "/notifications/mode", {"duplicates": options.duplicates, "reverse": True})
    storm_began = time.monotonic()
    answers = _send(s, payments, options)
    drained = s.drain_notifications(options.seconds)
    with ThreadPoolExecutor(DRIVERS) as driver:
        list(driver.map(lambda p: s.control("POST", _path(p, "notify")), payments))
    drained = s.drain_notifications(options.seconds) and drained
    storm_seconds = time.monotonic() - storm_began
    s.control("DELETE", "/notifications/mode")
    confirmed = _await_deliveries(s, payments, options.seconds)
    deliveries = s.control("GET", "/notifications")
    assert isinstance(deliveries, list)
    attempts = [a["response_code"] for d in deliveries for a in d["history"]]
    sent = len(answers) + len(attempts)
    outcomes = dict(s.query("SELECT outcome, count(*) FROM notifications GROUP BY outcome"))
    states = _states(s)
    rows = [
        ("payments", f"{len(payments)} ({_plan_counts(payments)})"),
        (
            "notifications sent",
            f"{sent} ({len(answers)} by the drill, {options.parallel} at "
            f"once per body; {len(attempts)} by the simulator)",
        ),
        ("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))),
        (
            "final states",
            ", ".join(f"{k} {v}" for k, v in sorted(Counter(states.values()).items())),
        ),
        ("rate", f"{sent / storm_seconds:.0f} notifications/s over {storm_seconds:.1f} s"),
        ("total time", f"{time.monotonic() - began:.1f} s"),
    ]
    checks = [
        _created(payments, create_codes, options.payments),
        _final_states(payments, states),
        _announced(s, payments),
        _answers(answers, attempts),
        _delivered(deliveries, drained),
        Check(
            sum(outcomes.values()) == sent,
            f"every notification sent was stored first: {sent} sent, "
            f"{sum(outcomes.values())} stored",
        ),
        s.audit(),
        _confirmations(s, payments, confirmed),
    ]
    return Result("Notification storm", rows, checks)


def _create_all(s: Stack, options: Options) -> tuple[list[Payment], Counter[int]]:
    def create(i: int) -> tuple[int, Payment | None]:
        plan = PLANS[i % len(PLANS)]
        order_id = f"STORM-{i:05d}"
        body = new_payment(order_id, 50_000 + 1_000 * i, plan.payment_method)
        status, answer = call("POST", f"{s.service_url}/payments", body, timeout=60)
        if status != 201 or not isinstance(answer, dict):
            return status, None
        return status, Payment(answer["id"], order_id, answer["gateway_order_id"], plan)

    with ThreadPoolExecutor(DRIVERS) as pool:
        made = list(pool.map(create, range(options.payments)))
    return [p for _, p in made if p is not None], Counter(status for status, _ in made)


def _send(s: Stack, payments: list[Payment], options: Options) -> list[int | str]:
    """Drive every payment at the simulator while posting its bodies ourselves; our answers."""
    url = f"{s.service_url}/payments/webhook"
    with ThreadPoolExecutor(options.senders) as sender, ThreadPoolExecutor(DRIVERS) as driver:
        batches = list(driver.map(lambda p: _drive(s, p, options, sender, url), payments))
        return [future.result() for batch in batches for future in batch]


def _drive(
    s: Stack, payment: Payment, options: Options, sender: ThreadPoolExecutor, url: str
) -> list[Future[int | str]]:
    """Pay as planned, replay once, then queue every body the simulator made, shuffled."""
    method, outcome = payment.plan.pay
    s.control("POST", _path(payment, "pay"), {"method": method, "outcome": outcome})
    if payment.plan.then:
        s.control("POST", _path(payment, "transition"), {"transaction_status": payment.plan.then})
    s.control("POST", _path(payment, "notify"))
    queued = s.control("GET", f"/notifications?order_id={payment.gateway_order_id}")
    assert isinstance(queued, list)
    bodies = list({json.dumps(d["body"], sort_keys=True): d["body"] for d in queued}.values())
    copies = bodies * options.parallel
    random.Random(f"{options.seed}:{payment.order_id}").shuffle(copies)
    return [sender.submit(_post, url, body) for body in copies]


def _post(url: str, body: dict) -> int | str:
    """POST one notification as Midtrans would; the HTTP status, or why no answer came."""
    try:
        return call("POST", url, body, timeout=60)[0]
    except OSError as exc:
        return type(exc).__name__


def _path(payment: Payment, action: str) -> str:
    return f"/transactions/{payment.gateway_order_id}/{action}"


def _plan_counts(payments: list[Payment]) -> str:
    counts = Counter(p.plan.name for p in payments)
    return ", ".join(f"{plan.name} {counts[plan.name]}" for plan in PLANS)


def _states(s: Stack) -> dict[str, str]:
    return dict(s.query("SELECT id::text, status FROM payments"))


def _await_deliveries(s: Stack, payments: list[Payment], timeout: float) -> bool:
    """Wait until the workers brought every outbox message to the receiver."""
    paid = {p.order_id for p in payments if p.plan.expected in PAID}

    def arrived() -> bool:
        (messages,) = s.query("SELECT count(*) FROM outbox")[0]
        events = set(s.receiver.event_ids())
        return paid <= set(s.receiver.confirmations()) and len(events) >= messages

    return wait_until(arrived, timeout)


def _created(payments: list[Payment], codes: Counter[int], wanted: int) -> Check:
    answers = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))
    return Check(
        len(payments) == wanted > 0,
        f"{len(payments)}/{wanted} payments created through POST /payments ({answers})",
    )


def _final_states(payments: list[Payment], states: dict[str, str]) -> Check:
    wrong = [
        (p.order_id, p.plan.name, states.get(p.payment_id))
        for p in payments
        if states.get(p.payment_id) != p.plan.expected
    ]
    shown = "; ".join(f"{o} ({plan}) is {got}" for o, plan, got in wrong[:5])
    return Check(
        bool(payments) and not wrong,
        f"{len(payments) - len(wrong)}/{len(payments)} payments in their planned final "
        f"state{': ' + shown if wrong else ''}",
    )


def _announced(s: Stack, payments: list[Payment]) -> Check:
    """Exactly the planned outbox messages: one payment.succeeded per success, and so on."""
    messages: dict[str, list[str]] = defaultdict(list)
    for payment_id, event_type in s.query("SELECT payment_id::text, event_type FROM outbox"):
        messages[payment_id].append(event_type)
    wrong = [
        p.order_id for p in payments if sorted(messages[p.payment_id]) != sorted(p.plan.announced)
    ]
    succeeded = sum(m.count("payment.succeeded") for m in messages.values())
    paid = sum(p.plan.expected in PAID for p in payments)
    return Check(
        not wrong and succeeded == paid > 0,
        f"exactly the planned outbox messages: {succeeded} payment.succeeded for {paid} "
        f"paid payments{'; wrong for ' + ', '.join(wrong[:5]) if wrong else ''}",
    )


def _answers(answers: list[int | str], attempts: list[int | None]) -> Check:
    """Every request answered, and answered 2xx: no 5xx, nothing Midtrans would send again."""
    codes = Counter(str(code) for code in [*answers, *attempts])
    good = sum(n for code, n in codes.items() if code.startswith("2") and len(code) == 3)
    return Check(
        bool(codes) and good == codes.total(),
        f"every notification answered 2xx, no 5xx, none unanswered "
        f"({', '.join(f'{c}: {n}' for c, n in sorted(codes.items()))})",
    )


def _delivered(deliveries: list, drained: bool) -> Check:
    statuses = Counter(d["status"] for d in deliveries)
    return Check(
        drained and statuses["delivered"] == len(deliveries) > 0,
        f"the simulator delivered all {len(deliveries)} notifications "
        f"({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))})",
    )


def _confirmations(s: Stack, payments: list[Payment], arrived: bool) -> Check:
    paid = {p.order_id for p in payments if p.plan.expected in PAID}
    confirmed = set(s.receiver.confirmations())
    missing, extra = paid - confirmed, confirmed - paid
    return Check(
        arrived and bool(paid) and not missing and not extra,
        f"the transaction service was asked to confirm all {len(paid)} paid orders and "
        f"no other ({len(missing)} missing, {len(extra)} unexpected)",
    )


HELP = {
    "payments": "payments created, spread over the plans",
    "parallel": "copies of each body the drill posts at once",
    "duplicates": "extra copies the simulator sends of each notification (0-10)",
    "seconds": "how long to wait for deliveries to settle",
    "senders": "the drill's concurrent requests",
    "seed": "seed of the shuffle",
}


def main(argv: list[str] | None = None) -> int:
    """Run the drill from the command line: exit 0, 1 (a check failed) or 2 (no stack)."""
    return run_drill("drills.storm", __doc__ or "", Options, run, HELP, argv)


if __name__ == "__main__":
    raise SystemExit(main())
