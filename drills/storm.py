"""Notification storm: duplicates, replays and out-of-order delivery for hundreds of payments.

    python -m drills.storm [--payments 300] [--parallel 4] [--duplicates 2] [--seconds 300]

Every payment is created through `POST /payments` and follows a plan whose final state is known
in advance. The simulator sends each of its notifications 1 + duplicates times, newest first,
and replays the current state once mid-storm; meanwhile the drill posts the same signed bodies
itself, `parallel` copies of each, shuffled, so that several requests for one payment are in
flight at once and a settlement may arrive before its pending. Shuffled in with them go tampered
copies of the real bodies (the simulator's signed notification of each state): unsigned fields
changed (transaction_status to settlement on a pending one, fraud_status, va_numbers, a 40-char
payment_type, refund_amount, transaction_id) and, for every tenth payment, a bad signature. The
storm ends with Midtrans's last word: one more replay of every transaction's current state, as
its retries would bring. The notification URL only stores; the workers apply each order's
waiting rows with one status call, and the drill waits for the inbox to drain before it checks.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

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
# Every tenth payment also gets copies with a bad signature.
BAD_SIGNATURE_EVERY = 10
# What the notification URL must answer a tampered copy with: (HTTP status, outcome).
ACCEPTED, REFUSED_STATUS, REFUSED_SIGNATURE = (
    (200, "accepted"),
    (403, "status_mismatch"),
    (403, "bad_signature"),
)


@dataclass(frozen=True)
class Options:
    """How big the storm is and how long to wait for it to settle."""

    payments: int = 300
    parallel: int = 4
    duplicates: int = 2
    seconds: float = 300.0
    senders: int = 8
    seed: int = 7


@dataclass(frozen=True)
class Payment:
    """A payment the service created, and its plan."""

    payment_id: str
    order_id: str
    gateway_order_id: str
    plan: Plan
    number: int = 0


@dataclass(frozen=True)
class Tampered:
    """A real notification with a field changed, and what the notification URL must answer."""

    kind: str
    body: dict
    expected: tuple[int, str]


# One POST's answer: the HTTP status (or why none came) and the outcome in its body.
Answer = tuple[int | str, str | None]


@dataclass
class Sent:
    """The drill's own requests: the genuine copies and the tampered ones."""

    genuine: list[Answer] = field(default_factory=list)
    tampered: list[tuple[Tampered, Answer]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def run(options: Options) -> Result:
    """Bring up a private stack, run the storm against it, check what it left behind."""
    with stack(workers=2) as running:
        return storm(running, options)


def storm(s: Stack, options: Options) -> Result:
    """Run the storm against a running stack; measurements and checks."""
    began = time.monotonic()
    payments, create_codes = _create_all(s, options)
    s.control("POST", "/notifications/mode", {"duplicates": options.duplicates, "reverse": True})
    # Counted from here: the status calls the storm's notifications cost.
    s.control("DELETE", "/calls")
    storm_began = time.monotonic()
    sent_by_drill = _send(s, payments, options)
    drained = s.drain_notifications(options.seconds)
    with ThreadPoolExecutor(DRIVERS) as driver:
        list(driver.map(lambda p: s.control("POST", _path(p, "notify")), payments))
    drained = s.drain_notifications(options.seconds) and drained
    storm_seconds = time.monotonic() - storm_began
    s.control("DELETE", "/notifications/mode")
    inbox_drained = s.drain_inbox(options.seconds)
    confirmed = _await_deliveries(s, payments, options.seconds)
    deliveries = s.control("GET", "/notifications")
    assert isinstance(deliveries, list)
    attempts = [a["response_code"] for d in deliveries for a in d["history"]]
    answers, tampered = sent_by_drill.genuine, sent_by_drill.tampered
    sent = len(answers) + len(tampered) + len(attempts)
    outcomes = s.inbox_outcomes()
    states = _states(s)
    calls_row, calls_check = _status_calls(s, payments)
    rows = [
        ("payments", f"{len(payments)} ({_plan_counts(payments)})"),
        (
            "notifications sent",
            f"{sent} ({len(answers)} genuine by the drill, {options.parallel} at once per body; "
            f"{len(tampered)} tampered ({_kinds(tampered)}); {len(attempts)} by the simulator)",
        ),
        ("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))),
        (
            "final states",
            ", ".join(f"{k} {v}" for k, v in sorted(Counter(states.values()).items())),
        ),
        ("webhook answers", _latency(sent_by_drill.seconds)),
        ("status calls", calls_row),
        ("arrival to applied", s.arrival_to_applied()),
        ("arrival to closed", s.arrival_to_applied(CLOSED)),
        ("rate", f"{sent / storm_seconds:.0f} notifications/s over {storm_seconds:.1f} s"),
        ("total time", f"{time.monotonic() - began:.1f} s"),
    ]
    stored = sum(outcomes.values())
    checks = [
        _created(payments, create_codes, options.payments),
        _final_states(payments, states),
        _as_at_the_simulator(s, payments),
        _announced(s, payments),
        _answers(answers, attempts),
        _tamper_answers(tampered),
        _refusals(outcomes, tampered),
        _delivered(deliveries, drained),
        Check(
            stored == sent,
            f"every notification sent was stored first: {sent} sent, {stored} stored",
        ),
        s.inbox_check(inbox_drained),
        calls_check,
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
        return status, Payment(answer["id"], order_id, answer["gateway_order_id"], plan, i)

    with ThreadPoolExecutor(DRIVERS) as pool:
        made = list(pool.map(create, range(options.payments)))
    return [p for _, p in made if p is not None], Counter(status for status, _ in made)


def _send(s: Stack, payments: list[Payment], options: Options) -> Sent:
    """Drive every payment at the simulator while posting its bodies ourselves; our answers."""
    url = f"{s.service_url}/payments/webhook"
    with ThreadPoolExecutor(options.senders) as sender, ThreadPoolExecutor(DRIVERS) as driver:
        batches = list(driver.map(lambda p: _drive(s, p, options, sender, url), payments))
        sent = Sent()
        for batch in batches:
            for tampered, future in batch:
                answer, seconds = future.result()
                sent.seconds.append(seconds)
                if tampered is None:
                    sent.genuine.append(answer)
                else:
                    sent.tampered.append((tampered, answer))
        return sent


def _drive(
    s: Stack, payment: Payment, options: Options, sender: ThreadPoolExecutor, url: str
) -> list[tuple[Tampered | None, Future[tuple[Answer, float]]]]:
    """Pay as planned, replay once, then queue every body the simulator made and tampered
    copies of the real ones, shuffled."""
    method, outcome = payment.plan.pay
    s.control("POST", _path(payment, "pay"), {"method": method, "outcome": outcome})
    real = [s.control("GET", _path(payment, "notification"))]
    if payment.plan.then:
        s.control("POST", _path(payment, "transition"), {"transaction_status": payment.plan.then})
        real.append(s.control("GET", _path(payment, "notification")))
    s.control("POST", _path(payment, "notify"))
    queued = s.control("GET", f"/notifications?order_id={payment.gateway_order_id}")
    assert isinstance(queued, list)
    bodies = list({json.dumps(d["body"], sort_keys=True): d["body"] for d in queued}.values())
    copies: list[tuple[Tampered | None, dict]] = [(None, body) for body in bodies]
    copies *= options.parallel
    copies += [(t, t.body) for t in _tamper(payment, real)]
    random.Random(f"{options.seed}:{payment.order_id}").shuffle(copies)
    return [(tampered, sender.submit(_post, url, body)) for tampered, body in copies]


def _tamper(payment: Payment, real: list[dict]) -> list[Tampered]:
    """Copies of a payment's real notifications with fields changed that Midtrans does not sign.

    None of them may change anything: the worker believes only the status API.
    """
    first, last = real[0], real[-1]
    copies = []
    if first["transaction_status"] == "pending":
        # status_code 201 with settlement: refused at the door.
        copies.append(
            Tampered("settlement", {**first, "transaction_status": "settlement"}, REFUSED_STATUS)
        )
    refunded = last.get("refund_amount")
    changes = {
        "fraud_status": {"fraud_status": "challenge" if "fraud_status" in last else "deny"},
        "va_numbers": {"va_numbers": [{"bank": "bca", "va_number": "99999999999999"}]},
        "payment_type": {"payment_type": "bank_transfer_" + "x" * 26},
        # More refunded than Midtrans did: a full refund of a paid one, or a part of a refunded one.
        "refund_amount": {"refund_amount": "1000.00" if refunded else last["gross_amount"]},
        "transaction_id": {"transaction_id": str(uuid.UUID(int=payment.number + 1))},
    }
    for kind, change in changes.items():
        copies.append(Tampered(kind, {**last, **change}, ACCEPTED))
    copies.append(Tampered("fraud_status", {**first, "fraud_status": "deny"}, ACCEPTED))
    if payment.number % BAD_SIGNATURE_EVERY == 0:
        forged = {**last, "gross_amount": "1.00"}
        copies.append(Tampered("bad_signature", forged, REFUSED_SIGNATURE))
        key = last["signature_key"]
        flipped = {**first, "signature_key": ("0" if key[0] != "0" else "1") + key[1:]}
        copies.append(Tampered("bad_signature", flipped, REFUSED_SIGNATURE))
    return copies


def _post(url: str, body: dict) -> tuple[Answer, float]:
    """POST one notification as Midtrans would: the HTTP status (or why no answer came), the
    outcome the service answered, and the seconds the answer took."""
    started = time.monotonic()
    try:
        status, answer = call("POST", url, body, timeout=60)
    except OSError as exc:
        return (type(exc).__name__, None), time.monotonic() - started
    outcome = answer.get("outcome") if isinstance(answer, dict) else None
    return (status, outcome), time.monotonic() - started


def _latency(seconds: list[float]) -> str:
    """The drill's own requests: how long the notification URL took to answer."""
    ordered = sorted(seconds) or [0.0]

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]

    p50, p99, most = (round(x * 1000) for x in (at(0.5), at(0.99), ordered[-1]))
    return f"p50 {p50} ms, p99 {p99} ms, max {most} ms over the drill's {len(seconds)} requests"


def _kinds(tampered: list[tuple[Tampered, Answer]]) -> str:
    counts = Counter(t.kind for t, _ in tampered)
    return ", ".join(f"{kind} {n}" for kind, n in counts.items())


# Outcomes of rows the worker closed with the payment's answer.
CLOSED = ("applied", "duplicate", "stale", "flagged", "amount_mismatch", "unsupported")


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


def _answers(answers: list[Answer], attempts: list[int | None]) -> Check:
    """Every genuine request answered, and answered 2xx: nothing Midtrans would send again."""
    codes = Counter(str(code) for code in [*(status for status, _ in answers), *attempts])
    good = sum(n for code, n in codes.items() if code.startswith("2") and len(code) == 3)
    return Check(
        bool(codes) and good == codes.total(),
        f"every genuine notification answered 2xx, no 5xx, none unanswered "
        f"({', '.join(f'{c}: {n}' for c, n in sorted(codes.items()))})",
    )


def _tamper_answers(tampered: list[tuple[Tampered, Answer]]) -> Check:
    """Tampered copies: accepted (and then ignored) or refused 403, each as it must be."""
    answered: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for copy, answer in tampered:
        (wrong if answer != copy.expected else answered)[copy.kind] += 1
    expected = {t.kind: t.expected for t, _ in tampered}
    shown = ", ".join(
        f"{kind} {status} {outcome} {answered[kind]}"
        for kind, (status, outcome) in expected.items()
    )
    return Check(
        bool(tampered) and not wrong,
        f"tampered copies answered as they must: {shown}"
        + (f"; wrong for {dict(wrong)}" if wrong else ""),
    )


def _refusals(outcomes: dict[str, int], tampered: list[tuple[Tampered, Answer]]) -> Check:
    """Exactly the forged and misfitting copies were refused; nothing genuine was."""
    expected = Counter(t.expected[1] for t, _ in tampered if t.expected != ACCEPTED)
    got = {o: outcomes.get(o, 0) for o in (*expected, "malformed")}
    return Check(
        got == {**expected, "malformed": 0},
        f"refused at the door: {', '.join(f'{o} {n}' for o, n in got.items())} "
        f"(sent {', '.join(f'{o} {n}' for o, n in expected.items())}, malformed 0)",
    )


def _as_at_the_simulator(s: Stack, payments: list[Payment]) -> Check:
    """Each payment holds what Midtrans holds, not what a tampered copy claimed."""
    transactions = s.control("GET", "/transactions")
    assert isinstance(transactions, list)
    known = {t["order_id"]: t for t in transactions}
    rows = s.query(
        "SELECT id::text, gateway_transaction_id, payment_type, refunded_amount, payment_details,"
        " needs_review FROM payments"
    )
    ours = {row[0]: row[1:] for row in rows}
    wrong = []
    for p in payments:
        txn = known.get(p.gateway_order_id, {})
        transaction_id, payment_type, refunded, details, review = ours[p.payment_id]
        fields = txn.get("method_fields") or {}
        differs = [
            name
            for name, held, truth in (
                ("transaction_id", transaction_id, txn.get("transaction_id")),
                ("payment_type", payment_type, txn.get("payment_type")),
                ("refunded", refunded, sum(r["amount"] for r in txn.get("refunds", []))),
                # A believed fraud_status would have put it on the review list.
                ("needs_review", review, False),
                *((k, details.get(k), fields[k]) for k in fields if k in details),
            )
            if held != truth
        ]
        if differs:
            wrong.append(f"{p.order_id} {','.join(differs)}")
    return Check(
        bool(payments) and not wrong,
        f"{len(payments) - len(wrong)}/{len(payments)} payments hold the simulator's "
        f"transaction id, payment type, refunded amount and method fields; none up for review"
        f"{': not ' + '; '.join(wrong[:5]) if wrong else ''}",
    )


def _status_calls(s: Stack, payments: list[Payment]) -> tuple[str, Check]:
    """Status calls the inbox cost (the reconciler's checks aside), per order and per change."""
    transactions = s.control("GET", "/transactions")
    assert isinstance(transactions, list)
    order_of = {t["transaction_id"]: t["order_id"] for t in transactions}
    calls: Counter[str] = Counter()
    for key, count in s.status_calls().items():
        calls[order_of.get(key, key)] += count
    checked = dict(s.query("SELECT gateway_order_id, checks FROM payments"))
    distinct = dict(
        s.query(
            "SELECT order_id, count(DISTINCT dedupe_key) FROM notifications"
            " WHERE dedupe_key IS NOT NULL GROUP BY order_id"
        )
    )
    (applied,) = s.query("SELECT count(*) FROM notifications WHERE outcome = 'applied'")[0]
    inbox = {p.gateway_order_id: calls[p.gateway_order_id] - checked.get(p.gateway_order_id, 0)
             for p in payments}  # fmt: skip
    over = [
        f"{order} {n} calls for {distinct.get(order, 0)}"
        for order, n in inbox.items()
        if n > distinct.get(order, 0)
    ]
    total, reconcile = sum(inbox.values()), sum(checked.get(o, 0) for o in inbox)
    stored = sum(distinct.values())
    orders = max(1, len(inbox))
    row = (
        f"{total} for the inbox ({total / max(1, applied):.2f} per applied change, {applied} "
        f"applied; {total / orders:.2f} per order for {stored / orders:.2f} distinct "
        f"notifications per order), {reconcile} by the reconciler"
    )
    check = Check(
        bool(inbox) and not over,
        f"status calls: every order cost at most one per distinct notification "
        f"(max {max(inbox.values(), default=0)} calls for one order; copies cost none)"
        f"{': over for ' + '; '.join(over[:5]) if over else ''}",
    )
    return row, check


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
