"""Dapr's quickstarts, Python SDK variants, under ``layotto run`` as their READMEs run them under ``dapr run``.

``tests/e2e/quickstarts/`` keeps the quickstarts' layout (``<quickstart>/python/sdk/<app>/app.py`` beside
``<quickstart>/components/`` or ``resources/`` and ``dapr.yaml``): the component files in Dapr's format with the
quickstarts' names, types and metadata (Redis on loopback), and apps making the quickstarts' SDK calls through
``DaprClient()`` in its default gRPC mode. Each test copies one quickstart to a fresh folder and starts it with
the README's command line, ``layotto`` for ``dapr``, plus ports of its own so it can run beside other sidecars.
The apps read a few variables a test sets (a topic, order numbers, configuration keys of this run, no
one-second pauses); unset, they behave as the quickstarts'.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest
import redis

from tests.e2e.test_cli import free_port
from tests.services import require_redis

QUICKSTARTS = Path(__file__).with_name("quickstarts")
# ``-P``: run in a quickstart app's folder, ``-m app.cli`` would otherwise import the folder's app.py as ``app``
LAYOTTO = [sys.executable, "-P", "-m", "app.cli"]
EXIT_TIMEOUT = 180  # seconds for a one-shot app and its sidecar to finish: generous, the machine may be busy
WAIT_TIMEOUT = 120  # seconds for one awaited step (a subscription, a delivery, an update)

pytestmark = pytest.mark.timeout(600)


def _quickstart(tmp_path: Path, name: str) -> Path:
    """A copy of the quickstart ``name`` (its Redis pointed at the test's); its ``python/sdk`` folder."""
    target = tmp_path / name
    shutil.copytree(QUICKSTARTS / name, target)
    for spec in target.rglob("*.yaml"):
        text = spec.read_text()
        if "127.0.0.1:6379" in text:
            spec.write_text(text.replace("127.0.0.1:6379", require_redis()))
    return target / "python" / "sdk"


def _environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """A shell with the project's virtualenv activated (``python3`` and ``uvicorn`` are its own, with the Dapr
    SDK), a fresh HOME for the sidecars' local files, and no Dapr variables of the caller's."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("DAPR_")}
    path = f"{Path(sys.executable).parent}{os.pathsep}{inherited.get('PATH', '')}"
    return {**inherited, "PATH": path, "HOME": str(tmp_path), **variables}


def _own_ports() -> list[str]:
    return [
        *("--dapr-http-port", str(free_port())),
        *("--dapr-grpc-port", str(free_port())),
        *("--metrics-port", str(free_port())),
    ]


def _readme_run(app_id: str, *command: str, app_port: str | None = None, ports: list[str] | None = None) -> list[str]:
    """A quickstart README's single-app ``dapr run`` line (run in the app's folder), with ports of its own."""
    flags = ["--app-id", app_id, "--resources-path", "../../../components/"]
    if app_port is not None:
        flags += ["--app-port", app_port]
    return [*flags, *(ports or _own_ports()), "--", *command]


def _orders(count: int) -> list[int]:
    """Order numbers of this run: nine digits each, so that ``_received`` can find them."""
    first = random.randrange(10**8, 10**9 - count)
    return list(range(first, first + count))


def _received(lines: list[str]) -> set[int]:
    """The order numbers a subscriber printed. Its handler prints from several threads (and its server's access
    log shares the pipe), so a print's newline may come after another's text: numbers are found anywhere."""
    return {int(number) for number in re.findall(r"Subscriber received : (\d{9})", "\n".join(lines))}


def _redis() -> redis.Redis:
    host, _, port = require_redis().partition(":")
    return redis.Redis(host=host, port=int(port or 6379), decode_responses=True)


class Run:
    """``layotto run ARGS`` in ``cwd``; its output lines are collected as they come (both pipes drained)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [*LAYOTTO, "run", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._drain, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._drain, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(pipe: IO[str] | None, lines: list[str]) -> None:
        assert pipe is not None
        with pipe:
            for line in pipe:
                lines.append(line.rstrip("\n"))

    def report(self) -> str:
        return "\n".join(["--- stdout", *self.stdout[-60:], "--- stderr", *self.stderr[-60:]])

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = WAIT_TIMEOUT) -> None:
        """Until ``condition()`` holds; fails when ``timeout`` passes or the process ends without it."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                self._join()
                if condition():
                    return
                raise AssertionError(f"exited with {self.process.returncode} before {what}\n{self.report()}")
            assert time.monotonic() < deadline, f"no {what} after {timeout}s\n{self.report()}"
            time.sleep(0.05)

    def finish(self, timeout: float = EXIT_TIMEOUT) -> int:
        """The exit code once the process ends by itself (as a one-shot app's sidecar does)."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"still running after {timeout}s\n{self.report()}") from None
        self._join()
        return code

    def stop(self) -> int:
        """Ctrl-C's signal to a running sidecar (it hands it to the app); killed if still running after a while."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._join()
        return self.process.returncode

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(10)

    def app_lines(self, prefix: str = "") -> list[str]:
        """The app's own lines (a run file prefixes each with ``== <appID> ==``), without the sidecar's logs and
        ``dapr run``'s status lines (``✅  Exited App successfully``)."""
        lines = [line.removeprefix(prefix) for line in self.stdout if line.startswith(prefix)]
        return [
            line
            for line in lines
            if " INFO layotto" not in line and " WARNING layotto" not in line and not line.startswith(("✅", "❌"))
        ]


@pytest.fixture
def store() -> Iterator[redis.Redis]:
    client = _redis()
    try:
        yield client
    finally:
        client.close()


@pytest.mark.redis
def test_state_management_quickstart_runs_from_its_run_file(tmp_path: Path, store: redis.Redis) -> None:
    """README: ``dapr run -f .`` — a Redis state store (with the quickstart's resiliency file) behind
    ``save_state``/``get_state``/``delete_state`` over gRPC; each order is read back as saved, then gone."""
    sdk = _quickstart(tmp_path, "state_management")
    numbers = _orders(3)
    env = _environment(tmp_path, FIRST_ORDER_ID=str(numbers[0]), ORDER_COUNT="3", ORDER_PAUSE="0")
    run = Run(["-f", "."], sdk, env)
    assert run.finish() == 0, run.report()

    expected = []
    for number in numbers:
        order = {"orderId": str(number)}
        saved = str(order)
        expected += [f"Saving Order: {order}", f"Result after get: {saved.encode()!r}", f"Deleting Order: {order}"]
    assert run.app_lines("== order-processor == ") == expected, run.report()
    # Dapr's key layout (``<app id>||<key>``) in the quickstart's Redis, and every order deleted from it
    assert store.exists(*(f"order-processor||{number}" for number in numbers)) == 0


@pytest.mark.redis
def test_pub_sub_quickstart_fastapi_subscriber_receives_the_checkout_orders(tmp_path: Path, store: redis.Redis) -> None:
    """README (single apps): the ``dapr-ext-fastapi`` subscriber (``DaprApp``, under uvicorn on its app port)
    and the checkout publisher, each with its own sidecar on the quickstart's Redis pub/sub component (and the
    Configuration file that folder also holds); every order published arrives as a CloudEvent the handler's
    pydantic model accepts (traceid and tracestate included, data a JSON object)."""
    sdk = _quickstart(tmp_path, "pub_sub")
    topic = f"orders-{uuid.uuid4().hex[:12]}"
    numbers = _orders(5)
    app_port = str(free_port())
    ports = _own_ports()
    http_port = ports[1]
    subscriber = Run(
        _readme_run(
            "order-processor-sdk-fastapi", "uvicorn", "app:app", "--port", app_port, app_port=app_port, ports=ports
        ),
        sdk / "order-processor-fastapi",
        _environment(tmp_path, ORDERS_TOPIC=topic),
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as sidecar:

            def subscribed() -> bool:
                try:
                    found = sidecar.get("/v1.0/metadata").json().get("subscriptions", [])
                except (httpx.TransportError, ValueError):
                    return False
                return any(entry["topic"] == topic for entry in found)

            subscriber.wait_until(subscribed, f"subscription to {topic} in the sidecar's metadata")

        env = _environment(
            tmp_path, ORDERS_TOPIC=topic, FIRST_ORDER_ID=str(numbers[0]), ORDER_COUNT=str(len(numbers)), ORDER_PAUSE="0"
        )
        checkout = Run(
            _readme_run("checkout-sdk", "python3", "app.py"),
            sdk / "checkout",
            env,
        )
        assert checkout.finish() == 0, checkout.report()
        assert checkout.app_lines() == [f"Published data: {json.dumps({'orderId': n})}" for n in numbers]

        def received() -> set[int]:
            return _received(subscriber.stdout)

        subscriber.wait_until(lambda: received() == set(numbers), f"orders {numbers} at the subscriber")
    finally:
        code = subscriber.stop()
        store.delete(topic)
    # stopped, not killed: uvicorn shuts down gracefully, then ends by the signal, whose code the sidecar exits with
    assert code in (0, 128 + signal.SIGTERM), subscriber.report()
    refused = [line for line in subscriber.stdout + subscriber.stderr if '" 422' in line]  # the model's refusals
    assert not refused, subscriber.report()


@pytest.mark.redis
def test_pub_sub_quickstart_runs_from_its_run_file_with_the_flask_subscriber(
    tmp_path: Path, store: redis.Redis
) -> None:
    """README: ``dapr run -f .`` — the Flask subscriber (its subscription's route relative, ``orders``) and the
    checkout publisher started together, each with its sidecar; every order published arrives, whichever of
    the two was ready first (a new consumer group reads the stream from its start, as with daprd)."""
    sdk = _quickstart(tmp_path, "pub_sub")
    run_file = sdk / "dapr.yaml"
    run_file.write_text(run_file.read_text().replace("appPort: 6002", f"appPort: {free_port()}"))
    topic = f"orders-{uuid.uuid4().hex[:12]}"
    numbers = _orders(5)
    env = _environment(
        tmp_path, ORDERS_TOPIC=topic, FIRST_ORDER_ID=str(numbers[0]), ORDER_COUNT=str(len(numbers)), ORDER_PAUSE="0"
    )
    run = Run(["-f", "."], sdk, env)

    def received() -> set[int]:
        return _received([line for line in run.stdout if line.startswith("== order-processor-sdk == ")])

    def published() -> list[str]:
        return [line for line in run.app_lines("== checkout-sdk == ") if line.startswith("Published data: ")]

    try:
        run.wait_until(lambda: received() == set(numbers), f"orders {numbers} at the subscriber")
        run.wait_until(lambda: len(published()) == len(numbers), "every publication printed")
    finally:
        code = run.stop()  # Ctrl-C's signal: the runner stops both sidecars and their apps
        store.delete(topic)
    assert code == 0, run.report()
    assert published() == [f"Published data: {json.dumps({'orderId': n})}" for n in numbers]
    subscribed = [{"pubsubname": "orderpubsub", "topic": topic, "route": "orders"}]
    assert f"Dapr pub/sub is subscribed to: {json.dumps(subscribed)}" in run.app_lines("== order-processor-sdk == ")


def test_secrets_management_quickstart_reads_the_local_secrets_file(tmp_path: Path) -> None:
    """README: ``dapr run --app-id order-processor --resources-path ../../../components/ -- python3 app.py`` in
    the app's folder: the local file secret store finds ``secrets.json`` from the working directory, and
    ``get_secret`` answers the file's value."""
    sdk = _quickstart(tmp_path, "secrets_management")
    app = sdk / "order-processor"
    value = f"passkey-{uuid.uuid4().hex}"
    (app / "secrets.json").write_text(json.dumps({"secret": value}))
    run = Run(
        _readme_run("order-processor", "python3", "app.py"),
        app,
        _environment(tmp_path),
    )
    assert run.finish() == 0, run.report()
    assert run.app_lines() == [f"Fetched Secret: { ({'secret': value}) }"], run.report()


@pytest.mark.redis
def test_configuration_quickstart_gets_items_and_sees_their_change(tmp_path: Path, store: redis.Redis) -> None:
    """README: the items set in Redis with ``MSET``, then ``dapr run --app-id order-processor --resources-path
    ../../../components/ --app-port 6001 -- python3 app.py`` (nothing listens on that app port); the app gets
    each item, subscribes to both, sees a second ``MSET`` through the subscription, then unsubscribes."""
    sdk = _quickstart(tmp_path, "configuration")
    suffix = f"-{uuid.uuid4().hex[:12]}"
    keys = [f"orderId1{suffix}", f"orderId2{suffix}"]
    before = [str(random.randrange(100, 500)), str(random.randrange(100, 500))]
    after = [str(int(value) + 500) for value in before]
    store.mset(dict(zip(keys, before, strict=True)))
    run = Run(
        _readme_run("order-processor", "python3", "app.py", app_port=str(free_port())),
        sdk / "order-processor",
        _environment(tmp_path, CONFIGURATION_KEY_SUFFIX=suffix, SUBSCRIBED_SECONDS=str(WAIT_TIMEOUT)),
    )
    try:
        run.wait_until(lambda: any(line.startswith("Subscription ID is ") for line in run.stdout), "subscription")
        store.mset(dict(zip(keys, after, strict=True)))
        assert run.finish() == 0, run.report()
    finally:
        run.stop()
        store.delete(*keys)

    lines = run.app_lines()
    assert lines[:2] == [f"Configuration for {key} : {value}" for key, value in zip(keys, before, strict=True)]
    assert lines[2].startswith("Subscription ID is ") and len(lines[2].split()[-1]) > 0, run.report()
    updates = {line for line in lines if line.startswith("Configuration update ")}
    assert updates == {f"Configuration update {key} : {value}" for key, value in zip(keys, after, strict=True)}
    # the SDK's watcher thread also prints as it stops, at the same time, so the two lines may run together
    assert "App unsubscribed from config changes" in "\n".join(lines[3:]), run.report()
