"""Gateway faults drill: Midtrans slows past our read timeout, then fails, then recovers.

A steady stream of creates runs throughout, as the transaction service sends them: each order
with its own Idempotency-Key, retried with the same order id and key after a 503 or 504. The drill
checks that a fault costs the caller a quick 503/504 (never a hung request or gunicorn worker), and
once the service's circuit breaker has opened, an immediate 503; that creates succeed again
afterwards; and that every payment row is either the order's live attempt or an attempt the service
closed as `failed` when Midtrans did not answer, which the retry replaced.

Then only the status API fails, which the notification URL never calls: payers keep paying new
payments at the simulator (which notifies the service) and post each one's signed notification
themselves, timed, while the status API answers `--status-slow-by` seconds late, then HTTP 503,
then recovers. The webhook must keep answering 200 quickly throughout; the workers keep the
notifications waiting (with backoff) and apply every one once the status API answers again.

    .venv/bin/python -m drills.gateway_faults [--read-timeout 1.5] [--creators 4] ...
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import urllib.error
import zlib
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from benchmarks.common import SetupError
from drills.cli import run_drill
from drills.harness import Stack, call, new_payment, stack
from drills.report import Check, Result, Row

NORMAL, SLOW, ERRORS, RECOVERED = "normal", "slow", "500s", "recovered"
PHASES = (NORMAL, SLOW, ERRORS, RECOVERED)
# The status API's own faults: what the payers' notifications meet.
STATUS_PHASES = ("status normal", "status slow", "status 503", "status recovered")
# What each payment of the status part is paid with, and the status it must end in.
PAY_OUTCOMES = (("settlement", "success"), ("pending", "pending"))
# What the service answers a create with while Midtrans is in each phase (README "JSON API").
# A create that met Midtrans's fault times out (504) or is refused (503); once the service's
# circuit breaker has opened, it is refused at once (503) without asking Midtrans.
EXPECTED = {NORMAL: {201}, SLOW: {504, 503}, ERRORS: {503}, RECOVERED: {201}}
# What a create whose Snap call failed leaves behind (service.create_payment), by the answer.
FAILED_DETAIL = {504: "gateway_timeout", 503: "gateway_unavailable"}


@dataclass(frozen=True)
class Options:
    """How hard and how long to push."""

    creators: int = 4
    interval: float = 0.5
    retry_after: float = 2.0
    normal: float = 10.0
    slow: float = 15.0
    errors: float = 10.0
    recovered: float = 15.0
    read_timeout: float = 1.5
    slow_by: float = 3.0
    margin: float = 2.0
    breaker_failures: int = 5
    breaker_seconds: float = 5.0
    payers: int = 2
    pay_interval: float = 0.25
    status_normal: float = 5.0
    status_slow: float = 15.0
    status_slow_by: float = 5.0
    status_errors: float = 15.0
    status_recovered: float = 5.0
    webhook_bound: float = 0.5
    patience: float = 180.0
    keep: bool = False

    @property
    def bound(self) -> float:
        """The slowest answer a create or /health may take, fault or not."""
        return self.read_timeout + self.margin

    @property
    def reopening(self) -> float:
        """How long after Midtrans recovers an open circuit may still refuse creates."""
        return self.breaker_seconds + self.read_timeout


@dataclass(frozen=True)
class Answer:
    """One create the caller sent and what came back."""

    order_id: str
    phase: str
    ended_in: str
    status: int
    seconds: float
    payment_id: str | None
    # Seconds between the start of its phase and the start of this create.
    into_phase: float

    @property
    def inside(self) -> bool:
        """Started and ended in the same phase, so the phase's fault alone decided it."""
        return self.phase == self.ended_in


def _order(order_id: str) -> dict:
    return new_payment(
        order_id, 150_000 + 1_000 * (zlib.crc32(order_id.encode()) % 50), "bank_transfer"
    )


def _key(order_id: str) -> str:
    return f"drill-{order_id}"


def timed(
    method: str, url: str, body: object | None = None, **kwargs: object
) -> tuple[int, object, float]:
    """call() with its wall time: (status, body, seconds); status 0 when nothing answered."""
    started = time.monotonic()
    try:
        status, answer = call(method, url, body, **kwargs)
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        status, answer = 0, str(exc)
    return status, answer, time.monotonic() - started


@dataclass
class Caller:
    """The transaction service's side: creates orders, retries the ones that failed."""

    url: str
    options: Options
    phase: str = NORMAL
    phase_started: float = field(default_factory=time.monotonic)
    answers: list[Answer] = field(default_factory=list)
    health: list[tuple[str, int, float]] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    numbers: itertools.count = field(default_factory=itertools.count)

    def create(self, order_id: str, timeout: float = 60) -> Answer:
        """POST one order with its key, recorded with the phase it started and ended in."""
        phase, into_phase = self.phase, time.monotonic() - self.phase_started
        headers = {"Idempotency-Key": _key(order_id)}
        url = f"{self.url}/payments"
        status, body, seconds = timed(
            "POST", url, _order(order_id), headers=headers, timeout=timeout
        )
        payment_id = body.get("id") if status == 201 and isinstance(body, dict) else None
        answer = Answer(order_id, phase, self.phase, status, seconds, payment_id, into_phase)
        with self.lock:
            self.answers.append(answer)
        return answer

    def stream(self, name: str) -> None:
        """One creator: a new order every interval, but a failed one first once it is due again."""
        owed: deque[tuple[float, str]] = deque()
        while not self.stopped.is_set():
            started = time.monotonic()
            if owed and owed[0][0] <= started:
                order_id = owed.popleft()[1]
            else:
                order_id = f"GF-{name}-{next(self.numbers)}"
            if self.create(order_id).status != 201:
                owed.append((time.monotonic() + self.options.retry_after, order_id))
            self.stopped.wait(max(0.0, self.options.interval - (time.monotonic() - started)))

    def probe(self) -> None:
        """Ask /health four times a second; a hung gunicorn shows as a slow or missing answer."""
        while not self.stopped.is_set():
            phase = self.phase
            status, _, seconds = timed("GET", f"{self.url}/health", timeout=30)
            with self.lock:
                self.health.append((phase, status, seconds))
            self.stopped.wait(0.25)

    def owed(self) -> list[str]:
        """Orders whose last answer was not a 201: the caller still has to retry them."""
        last: dict[str, int] = {}
        with self.lock:
            for answer in self.answers:
                last[answer.order_id] = answer.status
        return [order_id for order_id, status in last.items() if status != 201]


def _fault(s: Stack, phase: str, options: Options) -> None:
    if phase == SLOW:
        s.simulator("POST", "/faults", {"delay_seconds": options.read_timeout + options.slow_by})
    elif phase == ERRORS:
        s.simulator("POST", "/faults", {"status": 500})
    else:
        s.simulator("DELETE", "/faults")


def drive(s: Stack, options: Options) -> Caller:
    """Run the stream through the four phases, then retry what is still owed until it is 201."""
    caller = Caller(s.service_url, options)
    threads = [threading.Thread(target=caller.probe, daemon=True)] + [
        threading.Thread(target=caller.stream, args=(str(i),), daemon=True)
        for i in range(options.creators)
    ]
    for thread in threads:
        thread.start()
    durations = (options.normal, options.slow, options.errors, options.recovered)
    for phase, duration in zip(PHASES, durations, strict=True):
        # The fault first, then the label: a create labelled with a phase met its fault.
        _fault(s, phase, options)
        caller.phase, caller.phase_started = phase, time.monotonic()
        time.sleep(duration)
    caller.stopped.set()
    for thread in threads:
        thread.join(timeout=120)
    deadline = time.monotonic() + 120
    while (owed := caller.owed()) and time.monotonic() < deadline:
        for order_id in owed:
            caller.create(order_id)
        time.sleep(0.5)
    return caller


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.0f}"


def _statuses(answers: list[Answer]) -> str:
    counts = Counter(a.status for a in answers)
    return " ".join(f"{status}x{n}" for status, n in sorted(counts.items())) or "-"


def phase_rows(caller: Caller) -> list[Row]:
    """The table: per phase (by start), creates, latency, /health's slowest answer, statuses."""
    header = "creates  p50 ms  p99 ms  max ms  health max ms  statuses (inside | across the edge)"
    rows = [("phase", header)]
    for phase in PHASES:
        answers = [a for a in caller.answers if a.phase == phase]
        seconds = [a.seconds for a in answers]
        health = max((h[2] for h in caller.health if h[0] == phase), default=0)
        latency = [percentile(seconds, 0.5), percentile(seconds, 0.99), max(seconds, default=0)]
        columns = f"{len(answers):7} " + " ".join(_ms(x) for x in latency)
        inside = _statuses([a for a in answers if a.inside])
        edge = _statuses([a for a in answers if not a.inside])
        rows.append((phase, f"{columns}  {_ms(health):>13}  {inside} | {edge}"))
    return rows


def _phase_check(caller: Caller, phase: str, options: Options) -> Check:
    inside = [a for a in caller.answers if a.phase == phase and a.inside]
    if phase == RECOVERED:
        # The circuit opened during the faults refuses creates until its cooldown ends.
        inside = [a for a in inside if a.into_phase >= options.reopening]
    wrong = Counter(a.status for a in inside if a.status not in EXPECTED[phase])
    expected = " or ".join(str(status) for status in sorted(EXPECTED[phase]))
    line = (
        f"{phase}: {len(inside) - sum(wrong.values())}/{len(inside)} creates inside the phase "
        f"answered {expected}"
    )
    if phase == RECOVERED:
        line += f" (from {options.reopening:.1f} s in, once the circuit closed)"
    return Check(bool(inside) and not wrong, line + (f" (others: {dict(wrong)})" if wrong else ""))


def _breaker_check(caller: Caller) -> Check:
    """Once Midtrans was known to be slow, most creates were refused at once, not after a wait."""
    slow = [a for a in caller.answers if a.phase == SLOW and a.inside]
    fast = [a for a in slow if a.status == 503 and a.seconds < 0.25]
    line = (
        f"circuit breaker: {len(fast)}/{len(slow)} creates in the slow phase refused at once "
        f"(503 in under 0.25 s) instead of waiting for the read timeout"
    )
    return Check(len(fast) * 2 > len(slow), line)


def answer_checks(caller: Caller, options: Options) -> list[Check]:
    """Each phase's creates got its expected answer, all quickly; /health never stalled."""
    checks = [_phase_check(caller, phase, options) for phase in PHASES]
    checks.append(_breaker_check(caller))
    during = [a.seconds for a in caller.answers if a.phase in (SLOW, ERRORS)]
    slowest = max((a.seconds for a in caller.answers), default=0)
    line = (
        f"no create took longer than read timeout + margin = {options.bound:.1f} s (max "
        f"{slowest:.2f} s; during the faults p99 {percentile(during, 0.99):.2f} s, max "
        f"{max(during, default=0):.2f} s)"
    )
    checks.append(Check(slowest <= options.bound, line))
    health = [h for h in caller.health if h[0] in (SLOW, ERRORS)]
    bad = [h for h in health if h[1] != 200 or h[2] > options.bound]
    line = (
        f"/health answered 200 within {options.bound:.1f} s during the faults: "
        f"{len(health) - len(bad)}/{len(health)} probes"
    )
    checks.append(Check(bool(health) and not bad, line))
    return checks


class Attempt(NamedTuple):
    """One payments row, as far as the drill cares."""

    order_id: str
    gateway_order_id: str
    id: str
    status: str
    detail: str | None
    has_token: bool
    has_next_check: bool
    key: str | None


def _attempts(s: Stack) -> dict[str, list[Attempt]]:
    rows = s.query(
        "SELECT order_id, gateway_order_id, id::text, status, status_detail,"
        " snap_token IS NOT NULL, next_check_at IS NOT NULL, idempotency_key"
        " FROM payments ORDER BY order_id, attempt"
    )
    by_order: dict[str, list[Attempt]] = defaultdict(list)
    for row in rows:
        by_order[row[0]].append(Attempt(*row))
    return by_order


def _order_problems(attempts: list[Attempt], answers: list[Answer]) -> list[str]:
    """What is wrong with one order's rows, given every answer its caller got."""
    live = [a for a in attempts if a.status == "pending"]
    failed = [a for a in attempts if a.status == "failed"]
    problems = []
    if len(live) + len(failed) != len(attempts):
        problems.append("an attempt neither live nor failed")
    last_id = next((a.payment_id for a in reversed(answers) if a.status == 201), None)
    if len(live) != 1 or live[0].id != last_id:
        problems.append("no single live attempt matching the caller's 201")
    elif not (
        live[0].has_token and live[0].has_next_check and live[0].key == _key(live[0].order_id)
    ):
        problems.append("live attempt without token, next check or the caller's key")
    if any(a.key is not None for a in failed):
        problems.append("a failed attempt kept the caller's key")
    closed = Counter(a.detail for a in failed)
    refused = Counter(FAILED_DETAIL[a.status] for a in answers if a.status in FAILED_DETAIL)
    if closed != refused:
        problems.append(f"failed attempts {dict(closed)} for answers {dict(refused)}")
    return problems


def way_forward_check(s: Stack, caller: Caller) -> tuple[Check, list[Attempt]]:
    """Every order has one live attempt; every other row is a failed attempt a retry replaced."""
    by_order = _attempts(s)
    answers: dict[str, list[Answer]] = defaultdict(list)
    for answer in caller.answers:
        answers[answer.order_id].append(answer)
    problems = {o: _order_problems(by_order.get(o, []), a) for o, a in answers.items()}
    broken = {o: p for o, p in problems.items() if p}
    strangers = sorted(set(by_order) - set(answers))
    failed = [a for attempts in by_order.values() for a in attempts if a.status == "failed"]
    retried = sum(1 for attempts in by_order.values() if len(attempts) > 1)
    line = (
        f"way forward: {len(answers) - len(broken)}/{len(answers)} orders end with one live "
        f"attempt (pending, Snap token, next check, the caller's key); the other {len(failed)} "
        f"rows are failed with the key released, one gateway_timeout per 504 and one "
        f"gateway_unavailable per 503 ({retried} orders retried)"
    )
    if broken:
        line += f"; e.g. {next(iter(broken.items()))}"
    if strangers:
        line += f"; rows of orders nobody created: {strangers[:3]}"
    return Check(not broken and not strangers, line), failed


def replay_check(caller: Caller) -> Check:
    """Sending each order once more with its key returns the same live payment."""
    final = {a.order_id: a.payment_id for a in caller.answers if a.status == 201}
    replay = Caller(caller.url, caller.options, phase="replay")
    with ThreadPoolExecutor(caller.options.creators) as pool:
        answers = list(pool.map(replay.create, final))
    same = sum(a.status == 201 and a.payment_id == final[a.order_id] for a in answers)
    return Check(
        same == len(final) > 0,
        f"replay: {same}/{len(final)} orders sent again with their key got the same live payment",
    )


def orphan_row(s: Stack, failed: list[Attempt]) -> Row:
    """Snap sessions the slow simulator opened after the service had given up on them."""
    opened = {t.get("order_id") for t in s.simulator("GET", "/transactions") or []}
    orphans = sum(1 for attempt in failed if attempt.gateway_order_id in opened)
    shown = f"{orphans} of {len(failed)} failed attempts (token never shown; Midtrans expires them)"
    return ("orphan Snap sessions", shown)


def silence_check(s: Stack) -> Check:
    """A failed create announces nothing: its caller got the error, and a retry may succeed."""
    (messages,) = s.query("SELECT count(*) FROM outbox")[0]
    return Check(messages == 0, f"outbox: {messages} messages for the failed attempts")


def worker_hangs(s: Stack) -> Check:
    """gunicorn never had to kill a worker for hanging."""
    log = Path(s.root, "service.log").read_text(errors="replace")
    timeouts = log.count("WORKER TIMEOUT")
    return Check(timeouts == 0, f"gunicorn: {timeouts} WORKER TIMEOUT in the service log")


@dataclass(frozen=True)
class Notified:
    """One payment of the status part: paid at the simulator, its notification posted by us."""

    gateway_order_id: str
    payment_id: str
    expected: str
    phase: str
    status: int
    seconds: float


@dataclass
class Payers:
    """The status part's traffic: create, pay, post the signed notification, timed."""

    stack: Stack
    options: Options
    phase: str = STATUS_PHASES[0]
    notified: list[Notified] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    numbers: itertools.count = field(default_factory=itertools.count)

    def pay_one(self) -> None:
        """One payment created, paid and notified."""
        s, number = self.stack, next(self.numbers)
        order_id = f"GFN-{number}"
        status, body = call("POST", f"{s.service_url}/payments", _order(order_id), timeout=60)
        if status != 201 or not isinstance(body, dict):
            raise SetupError(f"create {order_id} while only the status API fails: {status} {body}")
        gateway_order_id = body["gateway_order_id"]
        outcome, expected = PAY_OUTCOMES[number % len(PAY_OUTCOMES)]
        pay = {"method": "bca_va", "outcome": outcome}
        s.control("POST", f"/transactions/{gateway_order_id}/pay", pay)
        notification = s.control("GET", f"/transactions/{gateway_order_id}/notification")
        phase = self.phase
        code, _, seconds = timed("POST", f"{s.service_url}/payments/webhook", notification)
        with self.lock:
            self.notified.append(
                Notified(gateway_order_id, body["id"], expected, phase, code, seconds)
            )

    def stream(self) -> None:
        """One payer: a payment every pay_interval until stopped."""
        while not self.stopped.is_set():
            started = time.monotonic()
            self.pay_one()
            self.stopped.wait(max(0.0, self.options.pay_interval - (time.monotonic() - started)))


def _status_fault(s: Stack, phase: str, options: Options) -> None:
    if phase == "status slow":
        fault = {"delay_seconds": options.status_slow_by, "operations": ["core.status"]}
        s.control("POST", "/faults", fault)
    elif phase == "status 503":
        s.control("POST", "/faults", {"status": 503, "operations": ["core.status"]})
    else:
        s.control("DELETE", "/faults")


def status_faults(s: Stack, options: Options) -> tuple[list[Row], list[Check]]:
    """Pay and notify while the status API is slow, then failing, then back; then check."""
    s.control("DELETE", "/calls")
    payers = Payers(s, options)
    with ThreadPoolExecutor(options.payers) as pool:
        streams = [pool.submit(payers.stream) for _ in range(options.payers)]
        durations = (
            options.status_normal,
            options.status_slow,
            options.status_errors,
            options.status_recovered,
        )
        waiting_at_recovery = 0
        for phase, duration in zip(STATUS_PHASES, durations, strict=True):
            _status_fault(s, phase, options)
            payers.phase = phase
            if phase == STATUS_PHASES[-1]:
                waiting_at_recovery = sum(s.inbox_waiting())
                recovered = time.monotonic()
            time.sleep(duration)
        payers.stopped.set()
        for future in streams:
            future.result()
    during_faults = sum(s.status_calls().values())
    drained = s.drain_notifications(options.patience)
    deliveries = s.control("GET", "/notifications")
    assert isinstance(deliveries, list)
    inbox_drained = s.drain_inbox(options.patience)
    caught_up = time.monotonic() - recovered
    calls = sum(s.status_calls().values())
    (retried,) = s.query(
        "SELECT count(*) FROM notifications WHERE order_id LIKE 'GFN-%' AND attempts > 1"
    )[0]
    rows: list[Row] = [
        ("status part", "payments  webhook p50 ms  p99 ms  max ms  answers"),
    ]
    for phase in STATUS_PHASES:
        mine = [n for n in payers.notified if n.phase == phase]
        seconds = [n.seconds for n in mine]
        latency = [percentile(seconds, 0.5), percentile(seconds, 0.99), max(seconds, default=0)]
        codes = " ".join(f"{c}x{n}" for c, n in sorted(Counter(n.status for n in mine).items()))
        rows.append(
            (phase, f"{len(mine):8}  {' '.join(_ms(x) for x in latency)}       {codes or '-'}")
        )
    rows += [
        (
            "status calls",
            f"{calls} in the status part ({during_faults} while the payers ran, faults included); "
            f"{retried} notifications waited for more than one try",
        ),
        (
            "recovery",
            f"{waiting_at_recovery} inbox rows waiting when the status API recovered; all "
            f"applied {caught_up:.1f} s later",
        ),
        ("arrival to applied", s.arrival_to_applied()),
    ]
    return rows, [
        _webhook_check(payers, options),
        _status_applied(s, payers),
        _simulator_delivered(deliveries, drained, payers),
        s.inbox_check(inbox_drained),
    ]


def _webhook_check(payers: Payers, options: Options) -> Check:
    """The notification URL never waits for Midtrans: 200 and quick, faults or not."""
    faulted = [n for n in payers.notified if n.phase in STATUS_PHASES[1:3]]
    wrong = Counter(n.status for n in payers.notified if n.status != 200)
    p99 = percentile([n.seconds for n in faulted], 0.99)
    slowest = max((n.seconds for n in payers.notified), default=0.0)
    return Check(
        bool(faulted) and not wrong and p99 <= options.webhook_bound,
        f"webhook during the status API faults: {len(faulted) - sum(wrong.values())}/"
        f"{len(faulted)} answered 200, p99 {p99 * 1000:.0f} ms (limit "
        f"{options.webhook_bound * 1000:.0f} ms), slowest of all {slowest * 1000:.0f} ms"
        + (f"; others: {dict(wrong)}" if wrong else ""),
    )


def _status_applied(s: Stack, payers: Payers) -> Check:
    """Every payment of the status part ends as Midtrans has it, its notifications applied."""
    states = dict(s.query("SELECT id::text, status FROM payments"))
    wrong = [
        f"{n.gateway_order_id} {states.get(n.payment_id)} not {n.expected}"
        for n in payers.notified
        if states.get(n.payment_id) != n.expected
    ]
    counts = Counter(n.expected for n in payers.notified)
    return Check(
        bool(payers.notified) and not wrong,
        f"{len(payers.notified) - len(wrong)}/{len(payers.notified)} payments notified during "
        f"the status API faults ended as Midtrans has them "
        f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"
        + (f": {'; '.join(wrong[:5])}" if wrong else ""),
    )


def _simulator_delivered(deliveries: list, drained: bool, payers: Payers) -> Check:
    """The simulator's own deliveries were all taken at the first try: nothing to resend."""
    ours = {n.gateway_order_id for n in payers.notified}
    mine = [d for d in deliveries if d["order_id"] in ours]
    first = sum(
        d["status"] == "delivered" and len(d["history"]) == 1
        and 200 <= (d["history"][0]["response_code"] or 0) < 300
        for d in mine
    )  # fmt: skip
    return Check(
        drained and len(mine) >= len(ours) > 0 and first == len(mine),
        f"the simulator's {len(mine)} notifications were all answered 2xx at the first try "
        f"({first})",
    )


def run(options: Options) -> Result:
    """Bring up a stack, run the phases, and check the answers, the rows and the audit."""
    env = {
        "MIDTRANS_READ_TIMEOUT": str(options.read_timeout),
        "MIDTRANS_BREAKER_FAILURES": str(options.breaker_failures),
        "MIDTRANS_BREAKER_SECONDS": str(options.breaker_seconds),
        "LOG_LEVEL": "ERROR",
    }
    with stack(keep=options.keep, **env) as s:
        caller = drive(s, options)
        checks = answer_checks(caller, options)
        forward, failed = way_forward_check(s, caller)
        checks += [forward, silence_check(s)]
        checks.append(replay_check(caller))
        rows = phase_rows(caller)
        rows.append(orphan_row(s, failed))
        status_rows, status_checks = status_faults(s, options)
        rows += status_rows
        checks += status_checks
        checks.append(worker_hangs(s))
        checks.append(s.audit())
        if options.keep:
            rows.append(("kept", str(s.root)))
    return Result("Gateway faults drill", rows, checks)


HELP = {
    "creators": "concurrent callers creating orders",
    "interval": "seconds between one caller's creates",
    "retry_after": "seconds before a caller retries a 503/504",
    "normal": "seconds before the fault",
    "slow": "seconds Midtrans answers read_timeout + slow_by late",
    "errors": "seconds Midtrans answers HTTP 500",
    "recovered": "seconds after the faults are cleared",
    "read_timeout": "MIDTRANS_READ_TIMEOUT for the service",
    "slow_by": "how far past the read timeout Midtrans answers",
    "margin": "latency allowed over the read timeout",
    "breaker_failures": "MIDTRANS_BREAKER_FAILURES for the service",
    "breaker_seconds": "MIDTRANS_BREAKER_SECONDS for the service",
    "payers": "concurrent payers in the status part",
    "pay_interval": "seconds between one payer's payments",
    "status_normal": "seconds of the status part before its faults",
    "status_slow": "seconds the status API answers status_slow_by late",
    "status_slow_by": "how late the slow status API answers",
    "status_errors": "seconds the status API answers HTTP 503",
    "status_recovered": "seconds of payments after the status API recovered",
    "webhook_bound": "p99 the webhook must keep during the status API faults",
    "patience": "seconds to wait for the inbox to drain after the recovery",
    "keep": "keep the drill's directory and logs",
}


def main(argv: list[str] | None = None) -> int:
    """Run the drill from the command line: exit 0, 1 (a check failed) or 2 (no stack)."""
    return run_drill("drills.gateway_faults", __doc__ or "", Options, run, HELP, argv)


if __name__ == "__main__":
    sys.exit(main())
