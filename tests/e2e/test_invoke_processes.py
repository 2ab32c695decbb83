"""Service invocation across real processes: apps behind their own ``python -m app.cli run``, calling each
other by app id — on the embedded default (SQLite name resolution, nothing else installed), through the
static resolver as docker-compose would, with load balancing, failover, streaming and resiliency."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e.apps.echo import pattern_bytes
from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy

ECHO = Path(__file__).parent / "apps" / "echo.py"
MiB = 1 << 20


@dataclass
class Node:
    """One sidecar process and (optionally) the echo app it started as its command."""

    app_id: str
    process: subprocess.Popen[str]
    http_port: int
    app_port: int = 0
    app_pid: int = 0
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30, trust_env=False))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def invoke(self, target: str, method: str, verb: str = "GET", **kwargs: object) -> httpx.Response:
        return self.client.request(verb, f"{self.base}/v1.0/invoke/{target}/method/{method}", **kwargs)  # type: ignore[arg-type]

    def kill(self) -> None:
        """kill -9 the sidecar and its app: no deregistration, nothing closed cleanly."""
        if self.app_pid:
            os.kill(self.app_pid, signal.SIGKILL)
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=10)

    def close(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            code, stderr = stop(self.process)
            assert code in (0, 128 + signal.SIGTERM), stderr[-3000:]  # uvicorn apps re-raise SIGTERM


def start(
    app_id: str,
    env: dict[str, str],
    *args: str,
    app: bool = True,
    instance: str = "",
    http_port: int = 0,
    app_port: int = 0,
) -> Node:
    http_port = http_port or free_port()
    flags = ["--app-id", app_id, "--dapr-http-port", str(http_port), *args]
    command: list[str] = []
    if app:
        app_port = app_port or free_port()
        flags += ["--app-port", str(app_port)]
        command = ["--", sys.executable, str(ECHO)]
    process = layotto(*flags, *command, env={**env, "INSTANCE": instance or app_id})
    token = {"dapr-api-token": env["DAPR_API_TOKEN"]} if env.get("DAPR_API_TOKEN") else {}
    return Node(app_id, process, http_port, app_port, client=httpx.Client(timeout=30, trust_env=False, headers=token))


def ready(*nodes: Node) -> None:
    for node in nodes:
        try:
            wait_healthy(node.http_port, timeout=30)
        except AssertionError:
            node.process.kill()
            raise AssertionError(node.process.communicate()[1][-3000:]) from None
        if node.app_port:
            node.app_pid = int(node.client.get(f"{node.base}/v1.0/metadata").json()["extended"]["appPID"])


@pytest.fixture(scope="module")
def default_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    """alpha and beta on the embedded default: no resources path, a fresh HOME for its SQLite files."""
    env = {"HOME": str(tmp_path_factory.mktemp("home"))}
    alpha = start("alpha", env, "--max-body-size", "64Mi")
    beta = start("beta", env, "--max-body-size", "64Mi")
    try:
        ready(alpha, beta)
        yield alpha, beta
    finally:
        alpha.close()
        beta.close()


VERBS = [("GET", 200), ("POST", 201), ("PUT", 202), ("DELETE", 409), ("PATCH", 502), ("OPTIONS", 204), ("HEAD", 200)]


def test_apps_call_each_other_with_every_verb_on_the_embedded_default(default_mesh: tuple[Node, Node]) -> None:
    alpha, beta = default_mesh
    for caller, callee in ((alpha, beta), (beta, alpha)):
        for verb, status in VERBS:
            answer = caller.invoke(callee.app_id, f"status/{status}", verb)
            assert answer.status_code == status, (caller.app_id, verb, answer.text)
            assert answer.content == (b"" if verb == "HEAD" or status == 204 else verb.encode())
    # the apps themselves call each other: client -> alpha's sidecar -> app alpha -> its sidecar -> beta
    relayed = alpha.invoke("alpha", "relay/beta/echo", "PUT", content=b"from alpha")
    assert relayed.status_code == 200, relayed.text
    seen = relayed.json()
    assert (seen["method"], seen["path"], seen["body"]) == ("PUT", "/echo", "from alpha")
    back = beta.invoke("beta", "relay/alpha/status/201", "POST")
    assert (back.status_code, back.content) == (201, b"POST")


def test_request_and_response_pass_across_sidecars(default_mesh: tuple[Node, Node]) -> None:
    alpha, _ = default_mesh
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    answer = alpha.invoke(
        "beta",
        "orders/new?id=7&x=a%20b",
        "POST",
        content=b'{"n":1}',
        headers={"content-type": "application/json", "x-custom": "1", "traceparent": parent, "keep-alive": "5"},
    )
    assert answer.status_code == 200
    seen = answer.json()
    assert (seen["path"], seen["query"], seen["body"]) == ("/orders/new", "id=7&x=a%20b", '{"n":1}')
    headers = dict((name, value) for name, value in seen["headers"])
    assert headers["content-type"] == "application/json" and headers["x-custom"] == "1"
    assert headers["traceparent"] == parent
    assert (headers["dapr-caller-app-id"], headers["dapr-callee-app-id"]) == ("alpha", "beta")
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["forwarded"].startswith("for=127.0.0.1;by=127.0.0.1")
    for hidden in ("keep-alive", "layotto-internal-invoke", "dapr-api-token", "dapr-app-id"):
        assert hidden not in headers
    out = alpha.invoke("beta", "headers-out")
    assert out.headers.get_list("x-multi") == ["a", "b"] and "keep-alive" not in out.headers
    assert len(out.headers.get_list("date")) == 1 and len(out.headers.get_list("server")) <= 1  # never twice
    unknown = alpha.invoke("nobody", "x")
    assert unknown.status_code == 500
    assert unknown.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: nobody, err: no host found with the given ID",
    }


def _vm(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field_name)


class PeakRSS:
    """Samples VmRSS of some processes every 20 ms while a transfer runs."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], _vm(pid, "VmRSS"))
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_50_mb_bodies_stream_through_two_sidecars_with_bounded_memory(default_mesh: tuple[Node, Node]) -> None:
    alpha, beta = default_mesh
    size = 50 * MiB
    payload = pattern_bytes(size)
    alpha.invoke("beta", "sink", "POST", content=b"warm-up")
    before = {node.app_id: _vm(node.process.pid, "VmRSS") for node in default_mesh}

    def chunks() -> Iterator[bytes]:
        for offset in range(0, size, MiB):
            yield payload[offset : offset + MiB]

    with PeakRSS(alpha.process.pid, beta.process.pid) as rss:
        started = time.monotonic()
        up = alpha.invoke("beta", "sink", "POST", content=payload)
        chunked = alpha.invoke("beta", "sink", "PUT", content=chunks())
        digest, received = hashlib.sha256(), 0
        with alpha.client.stream("GET", f"{alpha.base}/v1.0/invoke/beta/method/source?bytes={size}") as down:
            assert down.status_code == 200
            for chunk in down.iter_raw():
                digest.update(chunk)
                received += len(chunk)
        elapsed = time.monotonic() - started
    expected = {"bytes": size, "sha256": hashlib.sha256(payload).hexdigest()}
    assert up.json() == expected and chunked.json() == expected
    assert (received, digest.hexdigest()) == (size, expected["sha256"])
    growth = {node.app_id: rss.peak[node.process.pid] - before[node.app_id] for node in default_mesh}
    print(f"\n150 MB through two sidecars in {elapsed:.1f}s; before {before}; peak RSS growth {growth}")
    for app_id, grown in growth.items():
        assert grown < 25 * MiB, f"{app_id} sidecar grew by {grown / MiB:.1f} MiB"


def test_static_resolver_as_docker_compose_uses_it(tmp_path: Path) -> None:
    ports = {"web": free_port(), "api": free_port()}  # the internal ports: where sidecars call each other
    (tmp_path / "config.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: dapr.io/v1alpha1
            kind: Configuration
            metadata: {{name: compose}}
            spec:
              nameResolution:
                component: static
                configuration:
                  apps:
                    web: localhost:{ports["web"]}
                    api: [localhost:{ports["api"]}]
            """
        )
    )
    env = {"HOME": str(tmp_path), "LAYOTTO_INTERNAL_TOKEN": "compose-secret"}
    flags = ("--resources-path", str(tmp_path), "--dapr-listen-addresses", "0.0.0.0")
    web = start("web", env, *flags, "--dapr-internal-grpc-port", str(ports["web"]))
    api = start("api", env, *flags, "-I", str(ports["api"]))
    try:
        ready(web, api)
        for verb, status in VERBS:
            assert web.invoke("api", f"status/{status}", verb).status_code == status
            assert api.invoke("web", f"status/{status}", verb).status_code == status
        relayed = web.invoke("web", "relay/api/echo", "POST", content=b"hi")
        assert relayed.json()["body"] == "hi"
        assert not (tmp_path / ".layotto" / "data" / "nameresolution.db").exists()
        assert not (tmp_path / ".layotto" / "internal-token").exists()  # the configured secret is used
    finally:
        web.close()
        api.close()


def test_load_balancing_and_failover_across_instances(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    front = start("front", env, app=False)
    workers = [start("worker", env, instance=f"w{i}") for i in (1, 2)]
    try:
        ready(front, *workers)
        served = Counter(front.invoke("worker", "whoami").json()["instance"] for _ in range(50))
        assert served["w1"] >= 10 and served["w2"] >= 10, served  # conformance I-13 asks for 10%
        workers[0].kill()
        started = time.monotonic()
        after = [front.invoke("worker", "whoami") for _ in range(20)]
        assert [a.status_code for a in after] == [200] * 20
        assert {a.json()["instance"] for a in after} == {"w2"}
        assert time.monotonic() - started < 5  # the dead instance is skipped at once, not waited for
    finally:
        front.close()
        for worker in workers:  # the killed one too: its client still holds a connection to it
            worker.close()


RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: invoke}
spec:
  policies:
    timeouts:
      short: 500ms
    retries:
      thrice:
        policy: constant
        duration: 50ms
        maxRetries: 2
        matching: {httpStatusCodes: "500-599"}
    circuitBreakers:
      five:
        trip: consecutiveFailures > 4
        timeout: 1s
  targets:
    apps:
      callee: {timeout: short, retry: thrice, circuitBreaker: five}
"""


def test_timeout_retry_and_circuit_breaker_across_sidecars(tmp_path: Path) -> None:
    (tmp_path / "resiliency.yaml").write_text(RESILIENCY)
    env = {"HOME": str(tmp_path), "DAPR_API_TOKEN": "s3cret"}
    flags = ("--resources-path", str(tmp_path), "--max-body-size", "16Mi")
    caller, callee = start("caller", env, *flags, app=False), start("callee", env, *flags)
    try:
        ready(caller, callee)
        count = lambda key: int(httpx.get(f"http://127.0.0.1:{callee.app_port}/count/{key}").text)  # noqa: E731
        # the caller's sidecar wants its app's token; the hop to the callee's sidecar never carries it
        assert httpx.get(f"{caller.base}/v1.0/invoke/callee/method/whoami").status_code == 401

        retried = caller.invoke("callee", "flaky/a?fail=2", "POST", content=b"small body")
        assert (retried.status_code, retried.content) == (200, b"attempt 3")

        def chunked() -> Iterator[bytes]:
            yield b"streamed "
            yield b"body"

        streamed = caller.invoke("callee", "flaky/b?fail=1", "POST", content=chunked())
        assert streamed.status_code == 503 and count("b") == 1  # a consumed stream is not sent again
        large = caller.invoke("callee", "flaky/c?fail=1", "POST", content=b"x" * (5 * MiB))
        assert large.status_code == 503 and count("c") == 1  # too large to keep for replaying
        assert caller.invoke("callee", "status/200").status_code == 200  # resets the breaker's failure count

        started = time.monotonic()
        slow = caller.invoke("callee", "slow?ms=3000")
        assert slow.json() == {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": "failed to invoke, id: callee, err: context deadline exceeded",
        }
        assert 1.5 <= time.monotonic() - started < 4  # three attempts of 500 ms
        assert caller.invoke("callee", "status/200").status_code == 200

        exhausted = caller.invoke("callee", "flaky/d?fail=99&code=500")
        assert (exhausted.status_code, exhausted.content) == (500, b"failed")  # the app's answer, after 3 tries
        tripped = caller.invoke("callee", "flaky/d?fail=99&code=500")
        assert tripped.json() == {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": "failed to invoke, id: callee, err: circuit breaker is open",
        }
        assert count("d") == 5
        assert caller.invoke("callee", "status/200").status_code == 500  # still open
        time.sleep(1.1)
        assert caller.invoke("callee", "status/200").status_code == 200  # half-open probe closes it
    finally:
        caller.close()
        callee.close()


def test_a_method_crosses_the_hop_exactly_as_it_reaches_a_local_app(default_mesh: tuple[Node, Node]) -> None:
    """The calling sidecar unescapes the method once and the callee must get that very string, ``%`` and all:
    what the app sees is the same whether it was called through its own sidecar or another's."""
    alpha, beta = default_mesh
    for method in (
        "echo/a%2541",
        "echo/x%252Fy",
        "echo/%C3%A9t%C3%A9",
        "echo/a%2Fb",
        "echo/sp%20ace",
        "echo/..%2F..%2Fz",
    ):
        local = beta.invoke("beta", method)
        remote = alpha.invoke("beta", method)
        assert local.status_code == remote.status_code, (method, local.text, remote.text)
        if local.status_code == 200:
            assert remote.json()["path"] == local.json()["path"], method
        else:  # daprd forbids a "%" in the unescaped method: refused on either side alike
            assert "forbidden character" in local.text and "forbidden character" in remote.text
