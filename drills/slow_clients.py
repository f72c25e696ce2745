"""Slow clients drill: connections that trickle their headers must not stop the service answering.

gunicorn's gthread workers (2 x 4 threads, as production runs them) give a connection a thread as
soon as its first byte arrives and keep it there, reading, until the request is whole: eight
clients sending a byte every few seconds hold every thread, and /health and the Midtrans
notification URL stop answering. The deployed nginx config
(deploy/nginx/templates/default.conf.template) reads each request whole before gunicorn sees it
and drops a client that takes longer than its header timeout.

The drill brings up the stack (drills/harness.py, no background worker) and first points
`--connections` slow connections straight at gunicorn, to show the problem (printed, not judged);
then Debian's nginx runs the deployed config, rendered with loopback addresses as the image's
envsubst renders it, and the same slow connections go through it (judged). Each slow connection
sends a request line and headers one byte every `--trickle` seconds and never finishes them; one
the far side closes is opened again at once. Meanwhile, `--rate` times a second each, the drill
asks GET /health and posts a well-formed notification with a bad signature (which the app refuses
at once: 403 bad_signature), alternately to /payments/webhook and /webhook/midtrans. Every probe
must get its answer within `--bound` seconds. `--no-proxy` runs and judges only the first part
(it fails: the problem itself).

    .venv/bin/python -m drills.slow_clients [--seconds 30] [--connections 100] [--no-proxy]
"""

from __future__ import annotations

import contextlib
import grp
import http.client
import math
import os
import pwd
import re
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.common import ROOT, SetupError, free_port, started
from drills.cli import run_drill
from drills.gateway_faults import percentile
from drills.harness import call, stack, wait_until
from drills.report import Check, Result, Row

TEMPLATE = ROOT / "deploy" / "nginx" / "templates" / "default.conf.template"
# Where Debian puts nginx; a non-root PATH often lacks /usr/sbin.
DEBIAN_NGINX = Path("/usr/sbin/nginx")
# A probe still unanswered this long after it was due counts as unanswered: long enough to see
# how far past the bound an answer comes, short enough to show a stall within the run.
PROBE_TIMEOUT = 5.0
# What a slow connection sends: a request line and headers that never end.
SLOW_REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow-client\r\nX-Slow: "
# Seconds between two slow connections' arrivals at the start.
ARRIVAL_GAP = 0.02
HEALTH, NOTIFICATION = "GET /health", "POST notification"
NOTIFICATION_PATHS = ("/payments/webhook", "/webhook/midtrans")
DIRECT, PROXIED = "straight at gunicorn", "through nginx"

# The drill's stand-in for the nginx image's /etc/nginx/nginx.conf: the image's worker settings,
# with every file nginx writes in the drill's own directory, so that no root is needed.
MAIN_CONF = """\
{user}worker_processes auto;
pid {root}/nginx.pid;
error_log {root}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {root}/default.conf;
}}
"""


@dataclass(frozen=True)
class Options:
    """How many slow connections, how slow, for how long, and what counts as answering."""

    seconds: float = 30.0
    connections: int = 100
    trickle: float = 2.0
    rate: float = 4.0
    bound: float = 2.0
    no_proxy: bool = False


HELP = {
    "seconds": "how long the slow connections are held while the probes run, per part",
    "connections": "slow connections held open at once",
    "trickle": "seconds between two bytes of a slow connection",
    "rate": "probes per second of each kind (/health, the notification URL)",
    "bound": "seconds within which every probe must be answered",
    "no_proxy": "only the slow connections straight at gunicorn, judged (fails: the problem)",
}


def render(template: str, values: dict[str, str]) -> str:
    """The template as envsubst renders it given only these variables: no other $name touched."""

    def value(match: re.Match[str]) -> str:
        return values.get(match[1] or match[2], match[0])

    rendered = re.sub(r"\$(?:\{(\w+)\}|(\w+))", value, template)
    missing = sorted(set(re.findall(r"\$\{(\w+)\}", rendered)))
    if missing:
        raise SetupError(f"no value for {', '.join(missing)} in {TEMPLATE.name}")
    return rendered


def _worker_user() -> str:
    """The `user` line: as root, workers run as nobody (the image's `nginx` user is not here)."""
    if os.geteuid() != 0:
        return ""
    nobody = pwd.getpwnam("nobody")
    return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};\n"


def write_config(root: Path, listen: str, upstream: str) -> None:
    """The deployed template rendered into root as default.conf, inside a main nginx.conf."""
    values = {"TIKETQ_LISTEN": listen, "TIKETQ_UPSTREAM": upstream}
    (root / "default.conf").write_text(render(TEMPLATE.read_text(), values))
    (root / "nginx.conf").write_text(MAIN_CONF.format(user=_worker_user(), root=root))


def nginx_command(root: Path, *extra: str) -> list[str]:
    """nginx with root as its prefix and config, logging there from the first line."""
    binary = shutil.which("nginx") or (str(DEBIAN_NGINX) if DEBIAN_NGINX.exists() else None)
    if binary is None:
        raise SetupError("nginx is not installed (apt-get install -y nginx)")
    config = ["-p", f"{root}/", "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")]
    return [binary, *config, *extra]


def check_config(root: Path) -> str:
    """`nginx -t` on the config in root; its report, or SetupError with it."""
    done = subprocess.run(nginx_command(root, "-t"), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SetupError(f"nginx -t refused the config:\n{done.stderr}")
    return done.stderr


@contextlib.contextmanager
def proxy(upstream: str) -> Iterator[str]:
    """Debian's nginx running the deployed config in front of upstream (host:port); its URL."""
    root = Path(tempfile.mkdtemp(prefix="drill-nginx."))
    try:
        # As root, the workers (nobody) reach their temp directories through this one.
        root.chmod(0o755)
        port = free_port()
        write_config(root, f"127.0.0.1:{port}", upstream)
        check_config(root)
        url = f"http://127.0.0.1:{port}"
        command = nginx_command(root, "-g", "daemon off;")
        with started(command, dict(os.environ), root / "nginx.log", f"{url}/health"):
            yield url
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class SlowConnection:
    """A connection trickling its request: opened when, bytes sent, when the next is due."""

    sock: socket.socket
    opened: float
    sent: int = 0
    due: float = 0.0

    def next_byte(self) -> bytes:
        """The request's next byte; once the request line and headers ran out, a header's."""
        return SLOW_REQUEST[self.sent : self.sent + 1] or b"a"


@dataclass
class SlowClients:
    """`count` connections sending a request one byte every `trickle` seconds, never finishing.

    One thread keeps them: a connection the far side answers or closes is opened again at once.
    """

    address: tuple[str, int]
    count: int
    trickle: float
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    stopped: threading.Event = field(default_factory=threading.Event)
    closed_by_peer: int = 0
    lifetimes: list[float] = field(default_factory=list)
    failed_opens: int = 0
    bytes_sent: int = 0
    held: int = 0
    thread: threading.Thread = field(init=False)

    def __enter__(self) -> SlowClients:
        # Every connection is in, its first byte sent, before the caller's first probe. They come
        # one by one as real clients' do: gunicorn's workers share the listening socket, and a
        # burst would all go to whichever worker woke first.
        for _ in range(self.count):
            self._open()
            time.sleep(ARRIVAL_GAP)
        self.thread = threading.Thread(target=self._keep, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)
        connections = self._connections()
        self.held = len(connections)
        for connection in connections:
            self._close(connection)
        self.selector.close()

    def _connections(self) -> list[SlowConnection]:
        return [key.data for key in list(self.selector.get_map().values())]

    def _top_up(self) -> None:
        """Open connections until `count` are open (one try each per round)."""
        for _ in range(self.count - len(self.selector.get_map())):
            self._open()

    def _open(self) -> None:
        """One more slow connection, its first byte sent."""
        try:
            sock = socket.create_connection(self.address, timeout=5)
        except OSError:
            self.failed_opens += 1
            return
        sock.setblocking(False)
        connection = SlowConnection(sock, time.monotonic())
        self.selector.register(sock, selectors.EVENT_READ, connection)
        self._send(connection)

    def _send(self, connection: SlowConnection) -> None:
        try:
            connection.sock.send(connection.next_byte())
        except OSError:
            self._close(connection, by_peer=True)
            return
        connection.sent += 1
        self.bytes_sent += 1
        connection.due = time.monotonic() + self.trickle

    def _close(self, connection: SlowConnection, by_peer: bool = False) -> None:
        self.selector.unregister(connection.sock)
        connection.sock.close()
        if by_peer:
            self.closed_by_peer += 1
            self.lifetimes.append(time.monotonic() - connection.opened)

    def _keep(self) -> None:
        """Send each connection's bytes when due; replace the ones the far side gave up on."""
        while not self.stopped.is_set():
            due = min((c.due for c in self._connections()), default=time.monotonic())
            # At most half a second, so that a stop is seen at once.
            wait = min(0.5, max(0.0, due - time.monotonic()))
            for key, _ in self.selector.select(wait):
                # Readable: an answer (a 408, a 400) or the end; either way it is no longer held.
                self._close(key.data, by_peer=True)
            now = time.monotonic()
            for connection in self._connections():
                if connection.due <= now:
                    self._send(connection)
            self._top_up()


@dataclass(frozen=True)
class Probe:
    """One probe: its kind, whether the expected answer came, and how long after it was due."""

    kind: str
    answered: bool
    seconds: float


def bad_signature_notification(number: int) -> dict:
    """A well-formed Midtrans notification about an unknown order, signed with the wrong key."""
    return {
        "transaction_time": "2026-11-26 14:00:00",
        "transaction_status": "settlement",
        "transaction_id": f"slow-probe-{number}",
        "status_message": "midtrans payment notification",
        "status_code": "200",
        "payment_type": "bank_transfer",
        "order_id": f"SLOW-PROBE-{number}",
        "gross_amount": "150000.00",
        "currency": "IDR",
        "signature_key": "0" * 128,
    }


def _health(url: str, number: int) -> bool:
    status, _ = call("GET", f"{url}/health", timeout=PROBE_TIMEOUT)
    return status == 200


def _notification(url: str, number: int) -> bool:
    path = NOTIFICATION_PATHS[number % len(NOTIFICATION_PATHS)]
    body = bad_signature_notification(number)
    status, answer = call("POST", f"{url}{path}", body, timeout=PROBE_TIMEOUT)
    # The app's refusal, not any 403: the request reached it and it read the body.
    return status == 403 and isinstance(answer, dict) and answer.get("outcome") == "bad_signature"


PROBES: dict[str, Callable[[str, int], bool]] = {HEALTH: _health, NOTIFICATION: _notification}


def _probe(kind: str, url: str, number: int, due: float) -> Probe:
    try:
        answered = PROBES[kind](url, number)
    except (OSError, http.client.HTTPException):
        answered = False
    return Probe(kind, answered, time.monotonic() - due)


def run_probes(url: str, options: Options) -> list[Probe]:
    """Each kind of probe `rate` times a second for `seconds`, none waiting for another."""
    # Enough threads for every probe that may be in flight at once, so that none starts late.
    threads = math.ceil(options.rate * len(PROBES) * PROBE_TIMEOUT) + len(PROBES)
    with ThreadPoolExecutor(threads) as pool:
        futures = []
        start = time.monotonic()
        for number in range(math.ceil(options.seconds * options.rate)):
            # Timed from when it was due: a probe the drill itself sent late counts as slow.
            due = start + number / options.rate
            time.sleep(max(0.0, due - time.monotonic()))
            futures += [pool.submit(_probe, kind, url, number, due) for kind in PROBES]
        return [future.result() for future in futures]


@dataclass(frozen=True)
class Part:
    """One part of the drill: where the slow connections and the probes went, what came of it."""

    target: str
    probes: list[Probe]
    slow: SlowClients


def hold(target: str, url: str, options: Options) -> Part:
    """Hold the slow connections open against url while the probes run."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    with SlowClients(address, options.connections, options.trickle) as slow:
        probes = run_probes(url, options)
    return Part(target, probes, slow)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.0f}"


def probe_rows(part: Part, options: Options) -> list[Row]:
    """One line per kind of probe: how many, answered, latency, failures."""
    rows = []
    for kind in PROBES:
        mine = [p for p in part.probes if p.kind == kind]
        seconds = [p.seconds for p in mine]
        latency = [percentile(seconds, 0.5), percentile(seconds, 0.99), max(seconds, default=0)]
        failures = sum(not p.answered or p.seconds > options.bound for p in mine)
        answered = sum(p.answered for p in mine)
        columns = f"{len(mine):6}  {answered:8}  {' '.join(_ms(x) for x in latency)}  {failures:8}"
        rows.append((f"{part.target}: {kind}", columns))
    return rows


def slow_row(part: Part, options: Options) -> Row:
    """What became of the slow connections."""
    slow = part.slow
    lived = sum(slow.lifetimes) / len(slow.lifetimes) if slow.lifetimes else 0.0
    closed = (
        f"{slow.closed_by_peer} closed by the far side after {lived:.1f} s on average and reopened"
        if slow.closed_by_peer
        else "none closed by the far side"
    )
    value = (
        f"{slow.held}/{options.connections} open at the end; {closed}; {slow.bytes_sent} bytes "
        f"sent, one every {options.trickle:g} s each"
    )
    return (f"{part.target}: slow connections", value)


def part_checks(part: Part, options: Options) -> list[Check]:
    """Every probe answered within the bound; the slow connections were really held throughout."""
    checks = []
    expected = {HEALTH: "200", NOTIFICATION: "403 bad_signature"}
    for kind in PROBES:
        mine = [p for p in part.probes if p.kind == kind]
        good = [p for p in mine if p.answered and p.seconds <= options.bound]
        slowest = max((p.seconds for p in mine), default=0.0)
        line = (
            f"{kind} {part.target}: {len(good)}/{len(mine)} probes answered "
            f"{expected[kind]} within {options.bound:g} s (slowest {slowest:.2f} s)"
        )
        checks.append(Check(bool(mine) and len(good) == len(mine), line))
    slow = part.slow
    checks.append(
        Check(
            slow.held == options.connections and not slow.failed_opens,
            f"slow connections {part.target}: {slow.held}/{options.connections} held to the end, "
            f"{slow.failed_opens} failed to open",
        )
    )
    return checks


def _recovered(url: str, options: Options) -> None:
    """Once the slow connections are gone, gunicorn answers quickly again (or SetupError)."""

    def quick() -> bool:
        probe = _probe(HEALTH, url, 0, time.monotonic())
        return probe.answered and probe.seconds <= options.bound

    if not wait_until(quick, timeout=60, interval=0.2):
        raise SetupError("gunicorn still stalled 60 s after the slow connections went away")


HEADER = ("", "probes  answered   p50 ms  p99 ms  max ms  failures")


def run(options: Options) -> Result:
    """The slow connections straight at gunicorn, then through nginx; checks on the last part."""
    parts = []
    with stack(workers=0, PROXY_FIX_HOPS="1", LOG_LEVEL="ERROR") as s:
        parts.append(hold(DIRECT, s.service_url, options))
        if not options.no_proxy:
            _recovered(s.service_url, options)
            with proxy(urlsplit(s.service_url).netloc) as url:
                parts.append(hold(PROXIED, url, options))
    rows: list[Row] = [HEADER]
    for part in parts:
        rows += [*probe_rows(part, options), slow_row(part, options)]
    judged = parts[-1]
    if judged is not parts[0]:
        # Shown, not judged: without the proxy the slow connections are expected to win.
        rows += [
            (f"{DIRECT} (expected to fail)", f"{'ok  ' if c.ok else 'FAIL'} {c.line}")
            for c in part_checks(parts[0], options)
        ]
    title = (
        f"Slow clients: {options.connections} connections trickling a byte every "
        f"{options.trickle:g} s for {options.seconds:g} s, probes {options.rate:g}/s of each kind"
    )
    return Result(title, rows, part_checks(judged, options))


def main(argv: list[str] | None = None) -> int:
    """Run the drill from the command line: exit 0, 1 (a check failed) or 2 (no stack)."""
    return run_drill("drills.slow_clients", __doc__ or "", Options, run, HELP, argv)


if __name__ == "__main__":
    raise SystemExit(main())
