"""docker-compose.yml, proven without a Docker engine: the file is validated, and its local twin runs.

The twin reads the compose file and starts every service built from this repository (the sidecars, the
token job, both example apps) as a local process with the service's own entrypoint and command, bind mounts
and environment. What differs is only what one host forces: each network namespace gets free ports in place
of the container's fixed ones (3500, 50002, 6001...), a host name of the stack (``redis:6379``,
``orders-sidecar:50002``, ``host=postgres``) becomes the local service's address wherever it appears (the
environment and the mounted files, rewritten in a copy), and a named volume is a folder. Redis and
PostgreSQL are the machine's, Kafka is the suite's Kafka-protocol broker, Zipkin is a stand-in for its span
intake, and Prometheus is played by the test: it scrapes the targets of the stack's prometheus.yml.
Start order and readiness follow ``depends_on`` and each service's own ``healthcheck`` command. Then the
demo must run end to end: orders placed (sequencer, lock, state on Redis), accepted by checkout (invocation
across the sidecars through the static resolver), checked out by checkout (Kafka, state on PostgreSQL) and
receipted back; audit events over Redis Streams; a configuration update delivered.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.test_cli import free_port
from tests.services import require_postgres, require_redis

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OUR_IMAGE = "layotto-python:dev"
ORDERS_TO_CHECK = 3
pytestmark = pytest.mark.timeout(600)


# ---- the file itself -----------------------------------------------------------------------------------------


def _ours(service: dict[str, Any]) -> bool:
    return "build" in service or service.get("image") == OUR_IMAGE


def _namespace(name: str) -> str:
    mode = SERVICES[name].get("network_mode", "")
    return mode.removeprefix("service:") if mode.startswith("service:") else name


def dockerfile(path: Path) -> dict[str, list[str] | str]:
    """ENTRYPOINT, CMD (exec form) and the last WORKDIR of a Dockerfile's final stage."""
    found: dict[str, list[str] | str] = {}
    for line in path.read_text().splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "FROM":
            found = {}
        elif word in ("ENTRYPOINT", "CMD"):
            found[word] = json.loads(rest)
        elif word == "WORKDIR":
            found[word] = rest.strip()
    return found


def test_compose_file_is_the_stack_the_issue_asks_for() -> None:
    images = {name: s.get("image", "") for name, s in SERVICES.items()}
    for backend in ("redis", "kafka", "postgres", "zipkin", "prometheus"):
        assert backend in SERVICES, backend
    assert images["kafka"].startswith("apache/kafka") and "KAFKA_PROCESS_ROLES" in SERVICES["kafka"]["environment"]
    apps = [name for name, s in SERVICES.items() if s.get("network_mode", "").startswith("service:")]
    assert sorted(apps) == ["checkout", "orders"]
    for app in apps:
        sidecar = _namespace(app)
        assert SERVICES[sidecar]["environment"]["APP_ID"] == app
        assert SERVICES[app]["depends_on"][sidecar]["condition"] == "service_healthy"
    for name, service in SERVICES.items():
        assert service.get("restart") in ("unless-stopped", "no"), name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES, (name, dependency)
            if condition["condition"] == "service_healthy":
                has_check = "healthcheck" in SERVICES[dependency]
                assert has_check, f"{name} waits for {dependency} to be healthy, which has no healthcheck"
    assert dockerfile(ROOT / "Dockerfile")["ENTRYPOINT"] == ["layotto", "run"]


def _npm_tool(name: str) -> Path:
    found = ROOT / ".venv" / "node" / "node_modules" / ".bin" / name
    if not found.exists():
        message = f"{name} is not installed (make test installs it with npm)"
        if os.environ.get("LAYOTTO_REQUIRE_SERVICES"):
            pytest.fail(message)
        pytest.skip(message)
    return found


#: dclint's style rules (key and service order); the schema and the rest of its checks stay on
STYLE_RULES = [
    "service-keys-order",
    "services-alphabetical-order",
    "service-dependencies-alphabetical-order",
    "top-level-properties-order",
    "no-build-and-image",  # one image built once and shared by the sidecars, the token job and the Python app
]


def test_compose_file_passes_the_compose_spec_schema_and_dclint() -> None:
    done = subprocess.run(
        [str(_npm_tool("dclint")), "docker-compose.yml", "--max-warnings", "0", "--disable-rule", *STYLE_RULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dclint_rejects_what_the_schema_forbids(tmp_path: Path) -> None:
    """The validator is live: a misspelt key fails it."""
    broken = (ROOT / "docker-compose.yml").read_text().replace("restart: unless-stopped", "restartt: unless-stopped", 1)
    (tmp_path / "docker-compose.yml").write_text(broken)
    done = subprocess.run(
        [str(_npm_tool("dclint")), str(tmp_path / "docker-compose.yml"), "--disable-rule", *STYLE_RULES],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "invalid-schema" in done.stdout


# ---- the local twin ---------------------------------------------------------------------------------------------


@dataclass
class Twin:
    """The stack as local processes."""

    root: Path
    infrastructure: dict[tuple[str, int], str]  # (service, container port) -> local host:port
    ports: dict[tuple[str, int], int] = field(default_factory=dict)  # (namespace, container port) -> local port
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def port(self, namespace: str, container_port: int) -> int:
        return self.ports.setdefault((namespace, container_port), free_port())

    def address(self, service: str, container_port: int) -> str:
        if (service, container_port) in self.infrastructure:
            return self.infrastructure[(service, container_port)]
        assert _ours(SERVICES[service]), f"{service}:{container_port} has no local twin"
        return f"127.0.0.1:{self.port(_namespace(service), container_port)}"

    def rewrite(self, text: str) -> str:
        """Every ``service:port`` and ``host=service`` of the stack, as reached on this host."""
        names = "|".join(re.escape(name) for name in sorted(SERVICES, key=len, reverse=True))
        text = re.sub(rf"\b({names}):(\d+)\b", lambda m: self.address(m.group(1), int(m.group(2))), text)

        def libpq_host(match: re.Match[str]) -> str:
            host, port = self.address(match.group(1), 5432).split(":")
            return f"host={host} port={port}"

        return re.sub(rf"\bhost=({names})\b", libpq_host, text)

    def mounts(self, name: str) -> list[tuple[str, Path]]:
        """(container path, local path) of a service's volumes: bind mounts copied with the stack's addresses
        rewritten, named volumes as folders; longest container path first."""
        found: list[tuple[str, Path]] = []
        for volume in SERVICES[name].get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                local = self.root / "mounts" / source.strip("./").replace("/", "_")
                if not local.exists():
                    _copy_rewritten(ROOT / source, local, self.rewrite)
            else:
                local = self.root / "volumes" / source
                local.mkdir(parents=True, exist_ok=True)
            found.append((target, local))
        return sorted(found, key=lambda mount: len(mount[0]), reverse=True)

    def localise(self, name: str, value: str) -> str:
        """A value with each mounted container path (a whole path, or its start) replaced by the local one."""
        mounts = dict(self.mounts(name))
        if mounts:
            targets = "|".join(re.escape(target) for target in mounts)  # longest first
            pattern = rf"(?<![\w/.-])({targets})(?=[/'\"\s]|$)"
            value = re.sub(pattern, lambda m: str(mounts[m.group(1)]), value)
        return self.rewrite(value)

    def environment(self, name: str) -> dict[str, str]:
        namespace = _namespace(name)
        env = {
            key: str(self.port(namespace, int(value))) if key.endswith("_PORT") else self.localise(name, str(value))
            for key, value in SERVICES[name].get("environment", {}).items()
        }
        home = self.root / "homes" / namespace
        home.mkdir(parents=True, exist_ok=True)
        return {"PATH": os.environ["PATH"], "HOME": str(home), **env}

    def argv(self, name: str) -> tuple[list[str], Path]:
        """The service's command line as run here, and its working folder."""
        service = SERVICES[name]
        if service.get("image") == OUR_IMAGE:
            image = dockerfile(ROOT / "Dockerfile")
            context = ROOT
        else:
            context = ROOT / str(service["build"])
            image = dockerfile(context / "Dockerfile")
        entrypoint = list(service.get("entrypoint", image.get("ENTRYPOINT", [])))
        command = list(service.get("command", image.get("CMD", [])))
        argv = [self.localise(name, str(arg)) for arg in entrypoint + command]
        workdir = context if "build" in service and service.get("image") != OUR_IMAGE else self.root
        return [_program(argv[0]), *argv[1:]], workdir

    def start(self, name: str) -> subprocess.Popen[bytes]:
        argv, workdir = self.argv(name)
        log = (self.root / "logs" / f"{name}.log").open("wb")
        process = subprocess.Popen(
            argv, cwd=workdir, env=self.environment(name), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.processes[name] = process
        return process

    def healthy(self, name: str) -> bool:
        test = SERVICES[name]["healthcheck"]["test"]
        assert test[0] == "CMD", test
        argv = [_program(test[1]), *test[2:]]
        done = subprocess.run(argv, env=self.environment(name), capture_output=True, timeout=60)
        return done.returncode == 0

    def log(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"---- {name} ----\n{self.log(name)}" for name in self.processes)


def _program(name: str) -> str:
    """The local program for a container's: this Python (and its venv's console scripts), the machine's node."""
    if name == "python":
        return sys.executable
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    assert found, f"{name} is not installed here"
    return found


def _copy_rewritten(source: Path, target: Path, rewrite: Any) -> None:
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rewrite(source.read_text()))
        return
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
    for path in target.rglob("*"):
        if path.suffix in (".yaml", ".yml") and path.is_file():
            path.write_text(rewrite(path.read_text()))


def _start_order() -> list[str]:
    """Services in an order that honours depends_on."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        for dependency in SERVICES[name].get("depends_on", {}):
            visit(dependency)
        ordered.append(name)

    for name in SERVICES:
        visit(name)
    return ordered


def _ensure_database(dsn: str, name: str) -> None:
    import asyncio

    import asyncpg

    async def create() -> None:
        fields = dict(part.split("=", 1) for part in dsn.split())
        connection = await asyncpg.connect(
            host=fields.get("host"), port=int(fields.get("port", 5432)), user=fields.get("user"), database="postgres"
        )
        try:
            exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())


class ZipkinStandIn:
    """Zipkin's span intake (``POST /api/v2/spans``, JSON v2), recording what the sidecars send."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        spans = self.spans

        class Intake(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path == "/api/v2/spans":
                    spans.extend(json.loads(body))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Intake)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def zipkin() -> Iterator[ZipkinStandIn]:
    stand_in = ZipkinStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture
def twin(tmp_path: Path, kafka_brokers: str, zipkin: ZipkinStandIn) -> Iterator[Twin]:
    redis = require_redis()
    postgres = require_postgres()
    fields = dict(part.split("=", 1) for part in postgres.split())
    _ensure_database(postgres, SERVICES["postgres"]["environment"]["POSTGRES_DB"])
    if not (ROOT / "examples" / "node" / "node_modules" / "@dapr" / "dapr").is_dir():
        message = "examples/node has no node_modules (make test runs npm ci there)"
        if os.environ.get("LAYOTTO_REQUIRE_SERVICES"):
            pytest.fail(message)
        pytest.skip(message)
    infrastructure = {
        ("redis", 6379): redis,
        ("postgres", 5432): f"{fields.get('host', '127.0.0.1')}:{fields.get('port', '5432')}",
        ("kafka", 9092): kafka_brokers,
        ("zipkin", 9411): zipkin.address,  # a stand-in for its span intake
    }
    (tmp_path / "logs").mkdir()
    stack = Twin(tmp_path, infrastructure)
    try:
        yield stack
    finally:
        for process in reversed(stack.processes.values()):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        for process in stack.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait(what: str, check: Any, stack: Twin, watched: list[str], timeout: float = 240) -> Any:
    """Poll ``check`` until it returns a truthy value; a watched process that exits fails at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in watched:
            process = stack.processes[name]
            if process.poll() is not None:
                raise AssertionError(
                    f"{name} exited with {process.returncode} while waiting for {what}\n{stack.logs()}"
                )
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n{stack.logs()}")


def _status(stack: Twin) -> dict[str, Any] | None:
    port = stack.port("orders-sidecar", int(SERVICES["orders"]["environment"]["APP_PORT"]))
    try:
        return httpx.get(f"http://127.0.0.1:{port}/status", timeout=5).json()
    except httpx.TransportError:
        return None


def test_the_compose_stack_runs_as_local_processes_and_the_demo_flows(twin: Twin, zipkin: ZipkinStandIn) -> None:
    long_running: list[str] = []
    for name in _start_order():
        service = SERVICES[name]
        if not _ours(service):
            continue  # the machine's Redis and PostgreSQL, the suite's Kafka broker
        process = twin.start(name)
        waited_on = {
            condition["condition"]
            for other in SERVICES.values()
            for dependency, condition in other.get("depends_on", {}).items()
            if dependency == name
        }
        if "service_completed_successfully" in waited_on:
            assert process.wait(timeout=120) == 0, twin.log(name)
            continue
        long_running.append(name)
        if "service_healthy" in waited_on or "healthcheck" in service:
            _wait(f"{name} healthy", lambda name=name: twin.healthy(name), twin, long_running)

    token = twin.root / "volumes" / "layotto-secrets" / "internal-token"
    assert token.stat().st_mode & 0o077 == 0 and len(token.read_text()) == 64

    def flowed() -> dict[str, Any] | None:
        status = _status(twin)
        if status is None or len(status["orders"]) < ORDERS_TO_CHECK:
            return None
        first = status["orders"][:ORDERS_TO_CHECK]
        receipts = {r["orderId"] for r in status["receipts"]}
        audits = {a["orderId"] for a in status["audits"]}
        return status if set(first) <= receipts and set(first) <= audits and status["discounts"] else None

    status = _wait("the demo's orders to be receipted", flowed, twin, long_running)
    first = status["orders"][:ORDERS_TO_CHECK]
    assert [int(i) for i in first] == sorted(int(i) for i in first) and len(set(first)) == len(first)
    accepted = {a["orderId"]: a for a in status["accepted"]}
    for order_id in first:
        assert accepted[order_id] == {"orderId": order_id, "status": "accepted", "by": "checkout"}
    assert {"discount": "10%"} in status["discounts"]

    orders_api = f"http://127.0.0.1:{twin.port('orders-sidecar', 3500)}"
    checkout_api = f"http://127.0.0.1:{twin.port('checkout-sidecar', 3500)}"
    for api, expected in (
        (orders_api, {"state.redis", "pubsub.redis", "pubsub.kafka", "lock.redis"}),
        (checkout_api, {"state.postgresql", "pubsub.kafka", "lock.postgresql"}),
    ):
        types = {c["type"] for c in httpx.get(f"{api}/v1.0/metadata").json()["components"]}
        assert expected <= types, (api, types)
    for order_id in first:
        saved = httpx.get(f"{orders_api}/v1.0/state/statestore/order-{order_id}")
        assert saved.json() == {"orderId": order_id, "item": "coffee", "quantity": 1}
        checked_out = httpx.get(f"{checkout_api}/v1.0/state/statestore/checkout-{order_id}")
        assert checked_out.json()["paid"] is True, checked_out.text
    # the two sidecars found each other through the static resolver of the compose Configuration, not a registry
    assert not list((twin.root / "homes").rglob("nameresolution.db"))

    # what Prometheus scrapes: the targets of its mounted prometheus.yml, as the stack's addresses map here
    [(_, config)] = [m for m in twin.mounts("prometheus") if m[0].endswith("prometheus.yml")]
    targets = [
        t
        for job in yaml.safe_load(config.read_text())["scrape_configs"]
        for sc in job["static_configs"]
        for t in sc["targets"]
    ]
    assert len(targets) == 2
    for target in targets:
        exposition = httpx.get(f"http://{target}/metrics", timeout=10).text
        assert "dapr_http_server_request_count" in exposition, target

    # what Zipkin receives: spans of both sidecars, named by service (the app id)
    def services() -> set[str]:
        return {span.get("localEndpoint", {}).get("serviceName") for span in zipkin.spans}

    _wait("spans of both sidecars at Zipkin", lambda: {"orders", "checkout"} <= services(), twin, long_running, 60)
