"""The Dockerfile, the compose file and the nginx config in front of the service.

Docker cannot run on this machine, so the Dockerfile and compose file are checked by reading
them, and the production image's files are run as its COPY lines lay them out. The nginx config
is the deployed template rendered as the image renders it, run by Debian's nginx in front of a
stand-in upstream: these tests fail, not skip, without nginx.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath

import pytest
import requests
import yaml

from benchmarks.common import free_port
from drills import slow_clients
from drills.harness import wait_until
from tiketq import config

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "templates" / "default.conf.template"
SIMULATOR = "midtrans_simulator"
# What the service needs in its image, and all it gets in production.
SERVICE_FILES = {"requirements.txt", "wsgi.py", "gunicorn.conf.py", "tiketq", "migrations"}
# An answer larger than the kernel's socket buffers between nginx and a client that reads none
# of it (several MiB on loopback): only a proxy that buffers it can take it all from gunicorn.
LARGE_ANSWER = 24 * 1024 * 1024


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def directive(name: str) -> str:
    """The value of a directive the template sets exactly once."""
    values = re.findall(rf"^\s*{name}\s+([^;]+);", TEMPLATE.read_text(), re.MULTILINE)
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


def seconds(value: str) -> float:
    """An nginx time ("60s", "1m") in seconds."""
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[unit]


def gunicorn_setting(name: str, env: dict[str, str]) -> object:
    """One value of gunicorn.conf.py as gunicorn would read it in env."""
    code = f"import runpy; print(repr(runpy.run_path('gunicorn.conf.py')[{name!r}]))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout)


@dataclass
class Stage:
    """One `FROM base AS name` of the Dockerfile and its instructions, continuations joined."""

    name: str
    # An image, or an earlier stage's name.
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def stages() -> dict[str, Stage]:
    """The Dockerfile's stages by name, in file order: the last is what `docker build .` gives."""
    found: dict[str, Stage] = {}
    for line in re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text()).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, arguments = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            named = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", arguments.strip(), re.IGNORECASE)
            assert named, f"every stage is named, for compose's target: {line}"
            found[named[2]] = Stage(named[2], named[1])
        else:
            list(found.values())[-1].instructions.append((keyword.upper(), arguments.strip()))
    return found


def lineage(name: str) -> list[Stage]:
    """The stage, then the stages it is built FROM, down to an image: each inherits the next."""
    every = stages()
    chain = []
    while name in every:
        chain.append(every[name])
        name = every[name].base
    return chain


def copies(name: str) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY that puts files into the stage's image, in order."""
    found = []
    for stage in reversed(lineage(name)):
        for keyword, arguments in stage.instructions:
            assert keyword != "ADD", f"{stage.name}: COPY, not ADD: {arguments}"
            if keyword == "COPY":
                # A plain list of context paths: no JSON form, no --from another stage's files.
                assert not arguments.startswith("["), arguments
                *sources, destination = shlex.split(arguments)
                assert not [source for source in sources if source.startswith("--")], arguments
                found.append((sources, destination))
    return found


def copied(name: str) -> set[str]:
    """The context paths the stage's image holds."""
    return {source for sources, _ in copies(name) for source in sources}


def image_command(name: str) -> list[str]:
    """The CMD the stage runs: its own, else the one it inherits."""
    for stage in lineage(name):
        commands = [arguments for keyword, arguments in stage.instructions if keyword == "CMD"]
        if commands:
            return json.loads(commands[-1])
    raise AssertionError(f"{name} has no CMD")


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves this context path, or a folder it is in, out of the build."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            # Exceptions would need Docker's full last-match-wins rules.
            assert not line.startswith("!"), line
            # Docker's rules: ** is any number of folders, * and ? stay within one name.
            parts = re.split(r"(\*\*/|\*\*|\*|\?)", line.strip().strip("/"))
            wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
            patterns.append("".join(wildcards.get(part, re.escape(part)) for part in parts))
    parts = PurePosixPath(path).parts
    folders = ["/".join(parts[: depth + 1]) for depth in range(len(parts))]
    return any(re.fullmatch(pattern, folder) for pattern in patterns for folder in folders)


def lay_out_image(name: str, app: Path) -> None:
    """Put the stage's COPY sources under app (its WORKDIR) as the build context gives them."""

    def left_out(folder: str, names: list[str]) -> list[str]:
        relative = Path(folder).relative_to(ROOT)
        return [entry for entry in names if dockerignored((relative / entry).as_posix())]

    for sources, destination in copies(name):
        target = app / destination
        for source in sources:
            if (ROOT / source).is_dir():
                # COPY dir dest copies the folder's contents into dest.
                shutil.copytree(ROOT / source, target, ignore=left_out, dirs_exist_ok=True)
            else:
                assert destination.endswith("/") or destination == ".", destination
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target / source)


def compose_defaults(environment: dict[str, str]) -> dict[str, str]:
    """The environment with each ${NAME:-default} at its default: nothing set on the host."""
    return {
        name: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
        for name, value in environment.items()
    }


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_nginx_publishes_a_port_and_the_service_only_exposes_gunicorns():
    services = compose()["services"]
    assert services["nginx"]["ports"] == ["8003:80"]
    assert "ports" not in services["payment-service"]
    assert services["payment-service"]["expose"] == ["8000"]
    assert [name for name, service in services.items() if "ports" in service] == ["nginx"]


def test_nginx_is_the_pinned_official_image_rendering_the_deployed_template():
    nginx = compose()["services"]["nginx"]
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+", nginx["image"])
    assert nginx["volumes"] == ["./deploy/nginx/templates:/etc/nginx/templates:ro"]
    # The image writes templates/X.template to conf.d/X: default.conf replaces its welcome page.
    assert TEMPLATE.name == "default.conf.template"
    env = nginx["environment"]
    assert env["TIKETQ_UPSTREAM"] == "payment-service:8000"
    # Every variable of the template has a value, and the filter lets envsubst touch no other.
    used = set(re.findall(r"\$\{(\w+)\}", TEMPLATE.read_text()))
    assert used == {"TIKETQ_LISTEN", "TIKETQ_UPSTREAM"} <= set(env)
    assert all(re.match(env["NGINX_ENVSUBST_FILTER"], name) for name in used)
    assert not re.match(env["NGINX_ENVSUBST_FILTER"], "remote_addr")
    assert nginx["ports"] == [f"8003:{env['TIKETQ_LISTEN']}"]
    # nginx resolves payment-service when it starts: compose restarts it with a new container.
    dependency = nginx["depends_on"]["payment-service"]
    assert dependency == {"condition": "service_healthy", "restart": True}


def test_redis_is_pinned_healthchecked_and_up_before_the_service():
    services = compose()["services"]
    redis = services["redis"]
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+", redis["image"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["payment-service"]["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", ["migrate", "payment-service", "worker"])
def test_the_service_environment_is_behind_one_proxy_with_a_shared_rate_limit_store(service):
    env = compose()["services"][service]["environment"]
    assert env["RATELIMIT_STORAGE_URI"] == "redis://redis:6379/0"
    assert env["PROXY_FIX_HOPS"] == "1"
    assert env["GUNICORN_BIND"] == "0.0.0.0:8000"
    assert env["PUBLIC_BASE_URL"] == "${PUBLIC_BASE_URL:-http://localhost:8003}"


def test_migrations_finish_before_gunicorn_starts():
    services = compose()["services"]
    assert services["migrate"]["command"] == ["flask", "--app", "wsgi", "db", "upgrade"]
    assert (
        services["payment-service"]["depends_on"]["migrate"]["condition"]
        == "service_completed_successfully"
    )
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_database_credentials_come_from_the_secrets_files():
    document = compose()
    assert {name: s["file"] for name, s in document["secrets"].items()} == {
        "db_user": "./secrets/db_user.txt",
        "db_password": "./secrets/db_password.txt",
    }
    for name in ("db_user", "db_password"):
        assert (ROOT / document["secrets"][name]["file"]).is_file()
    env = document["services"]["payment-service"]["environment"]
    assert env["POSTGRES_USER_FILE"] == "/run/secrets/db_user"
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert (
        document["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"]
        == "/run/secrets/db_password"
    )


@pytest.mark.parametrize("stage", ["production", "dev"])
def test_the_image_runs_gunicorn_with_the_repository_config(stage):
    assert image_command(stage) == ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]


def test_the_default_image_is_production_and_holds_the_service_alone():
    assert list(stages())[-1] == "production"
    # No simulator, and no `COPY . .` that would bring it (and tests, secrets) along.
    assert copied("production") == SERVICE_FILES


def test_the_dev_image_is_the_production_one_with_the_simulator():
    assert lineage("dev")[1:] == lineage("production")[1:]
    assert copied("dev") == SERVICE_FILES | {SIMULATOR}


def test_the_build_context_holds_what_the_images_copy_and_leaves_the_rest_out():
    assert not [path for name in stages() for path in copied(name) if dockerignored(path)]
    assert dockerignored(f"{SIMULATOR}/__pycache__/core.cpython-311.pyc")
    for path in (".git", ".venv", "tests", "secrets", "instance", ".env", "tiketq/__pycache__"):
        assert dockerignored(path), path


def test_compose_builds_one_image_for_all_holding_the_simulator_they_run_without_keys():
    services = compose()["services"]
    built = {name: service["build"] for name, service in services.items() if "build" in service}
    assert built == dict.fromkeys(
        ("migrate", "payment-service", "worker"), {"context": ".", "target": "dev"}
    )
    in_app = set()
    for name in built:
        env = compose_defaults(services[name]["environment"])
        midtrans = {key: value for key, value in env.items() if key.startswith("MIDTRANS_")}
        if config.from_environ(midtrans, "/app/instance")["MIDTRANS_SIMULATOR_IN_APP"]:
            in_app.add(name)
    # The worker calls the web container's simulator (MIDTRANS_SIMULATOR_URL), not one of its own.
    assert in_app == {"migrate", "payment-service"}
    assert all(SIMULATOR in copied(built[name]["target"]) for name in in_app)


@pytest.mark.slow
def test_the_production_image_refuses_to_start_without_keys_and_serves_with_them(tmp_path):
    app = tmp_path / "app"
    lay_out_image("production", app)
    port = free_port()
    # PATH for the venv's gunicorn and flask, as the image's pip install puts them on its PATH.
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PORT": str(port),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }

    def run(*command: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=app, env={**env, **settings}, capture_output=True, text=True, timeout=60
        )

    # Not found here although this checkout holds it: the venv has no path to it.
    found = run(
        "python", "-c", f"import importlib.util; print(importlib.util.find_spec({SIMULATOR!r}))"
    )
    assert found.stdout.strip() == "None", found.stdout + found.stderr

    migrate = compose()["services"]["migrate"]["command"]
    refused = run(*migrate)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    (line,) = refused.stderr.splitlines()
    assert "MIDTRANS_SERVER_KEY and MIDTRANS_CLIENT_KEY" in line and "dev image" in line, line
    served = run(*image_command("production"))
    assert served.returncode != 0, served.stdout + served.stderr
    assert line in served.stderr.splitlines(), served.stderr
    assert "Traceback" not in served.stdout + served.stderr

    keys = {"MIDTRANS_SERVER_KEY": "SB-Mid-server-x", "MIDTRANS_CLIENT_KEY": "SB-Mid-client-x"}
    migrated = run(*migrate, **keys)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            image_command("production"),
            cwd=app,
            env={**env, **keys},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok
            # Refused before gunicorn listens, a timeout while its worker boots.
            except (requests.ConnectionError, requests.Timeout):
                return server.poll() is not None

        assert wait_until(up, timeout=60, interval=0.2), log.read_text()
        assert server.poll() is None, log.read_text()
    finally:
        server.terminate()
        server.wait(30)


def test_gunicorn_binds_the_address_compose_gives_it():
    env = compose()["services"]["payment-service"]["environment"]
    bind = gunicorn_setting("bind", {"PORT": env["PORT"], "GUNICORN_BIND": env["GUNICORN_BIND"]})
    assert bind == "0.0.0.0:8000"


def test_the_worker_runs_from_the_same_image_after_migrations():
    worker = compose()["services"]["worker"]
    assert worker["command"] == ["flask", "--app", "wsgi", "payments", "worker"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Internal: straight to gunicorn, not through nginx.
    assert (
        worker["environment"]["MIDTRANS_SIMULATOR_URL"] == "http://payment-service:8000/_simulator"
    )
    assert worker["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"


def test_nginx_refuses_exactly_the_bodies_the_app_refuses(tmp_path):
    limit = config.from_environ({}, str(tmp_path))["MAX_CONTENT_LENGTH"]
    assert directive("client_max_body_size") == f"{limit // 1024}k"
    # A body nginx accepts is held in memory whole, never in a temp file.
    assert directive("client_body_buffer_size") == directive("client_max_body_size")


def test_nginx_waits_for_gunicorn_longer_than_the_app_waits_for_itself(tmp_path):
    settings = config.from_environ({}, str(tmp_path))
    midtrans = settings["MIDTRANS_CONNECT_TIMEOUT"] + settings["MIDTRANS_READ_TIMEOUT"]
    gunicorn_timeout = gunicorn_setting("timeout", {})
    assert isinstance(gunicorn_timeout, int)
    assert seconds(directive("proxy_read_timeout")) > max(gunicorn_timeout, midtrans)


def test_nginx_buffers_both_ways_and_drops_slow_clients():
    assert directive("proxy_request_buffering") == "on"
    assert directive("proxy_buffering") == "on"
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        # Far shorter than gunicorn's timeout: a stalled client is gone long before it matters.
        assert seconds(directive(name)) <= 15, name
    assert seconds(directive("keepalive_timeout")) <= 30


def test_nginx_accepts_the_rendered_config(tmp_path):
    slow_clients.write_config(tmp_path, "127.0.0.1:8080", "127.0.0.1:8000")
    report = slow_clients.check_config(tmp_path)
    assert "test is successful" in report
    rendered = (tmp_path / "default.conf").read_text()
    assert "${" not in rendered
    # nginx's own variables are left for nginx.
    assert "$remote_addr" in rendered and "$http_host" in rendered


@dataclass
class Upstream:
    """Stands in for gunicorn behind nginx: records each request, answers JSON or a large body."""

    url: str = ""
    received: list[dict] = field(default_factory=list)
    large_answer_sent: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        """The paths requested so far, in arrival order."""
        with self.lock:
            return [r["path"] for r in self.received]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    record = Upstream()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer()

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(int(self.headers.get("Content-Length") or 0))

        def _answer(self, length: int = 0) -> None:
            # Recorded on arrival, before the body is read: a request streamed on unbuffered
            # would show here while its body still trickled in.
            request = {"path": self.path, "headers": dict(self.headers)}
            with record.lock:
                record.received.append(request)
            request["body"] = len(self.rfile.read(length))
            if self.path == "/large":
                self._send(b"x" * LARGE_ANSWER, "application/octet-stream")
                record.large_answer_sent.set()
            else:
                self._send(json.dumps(request).encode(), "application/json")

        def _send(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    record.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def proxy(upstream: Upstream) -> Iterator[str]:
    """The deployed config run by Debian's nginx in front of the stand-in upstream."""
    with slow_clients.proxy(upstream.url.removeprefix("http://")) as url:
        yield url


def test_the_proxy_forwards_the_client_address_and_scheme_and_no_other_claim(proxy):
    spoofed = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Prefix": "/evil",
        "Host": "pay.tiketq.example:8003",
    }
    seen = requests.get(f"{proxy}/health", headers=spoofed, timeout=10).json()["headers"]
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["Host"] == "pay.tiketq.example:8003"
    assert not {"X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Prefix"} & set(seen)


def test_a_body_over_max_content_length_is_refused_by_nginx_in_the_api_error_shape(proxy, upstream):
    limit = 64 * 1024
    accepted = requests.post(f"{proxy}/payments/webhook", data=b"x" * limit, timeout=10)
    assert accepted.status_code == 200 and accepted.json()["body"] == limit
    refused = requests.post(f"{proxy}/payments/too-large", data=b"x" * (limit + 1), timeout=10)
    assert refused.status_code == 413
    assert refused.headers["Content-Type"] == "application/json"
    assert refused.json() == {
        "detail": "The data value transmitted exceeds the capacity limit.",
        "errors": [],
    }
    assert "/payments/too-large" not in upstream.paths()


def test_a_request_reaches_the_upstream_only_once_its_body_is_whole(proxy, upstream):
    host, port = proxy.removeprefix("http://").split(":")
    body = json.dumps({"order_id": "ORD-SLOW", "padding": "x" * 500}).encode()
    head = (
        f"POST /payments/webhook?slow HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
        f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as slow:
        slow.sendall(head + body[:100])
        # A request sent after the slow one's first bytes gets through and answered first...
        requests.get(f"{proxy}/health?after", timeout=10).raise_for_status()
        assert "/payments/webhook?slow" not in upstream.paths()
        # ...and the slow one reaches the upstream whole once its last byte is in.
        slow.sendall(body[100:])
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["body"] == len(body)


def test_the_proxy_takes_a_large_answer_whole_while_the_client_reads_none_of_it(proxy, upstream):
    host, port = proxy.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as reader:
        reader.sendall(f"GET /large HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        # The upstream finished writing although the client has not read a byte: nginx holds it.
        assert wait_until(upstream.large_answer_sent.is_set, timeout=60, interval=0.05)
