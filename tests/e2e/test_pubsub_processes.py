"""Pub/sub across real processes: sidecars started with ``python -m app.cli run``, a FastAPI subscriber app,
publishing through one sidecar and delivering through another; crash safety with kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.sidecars import START_TIMEOUT, started
from tests.e2e.test_cli import free_port, layotto, stop
from tests.services import require_redis
from tests.sidecar import component_yaml

APP = Path(__file__).parent / "apps" / "subscriber.py"

# Waits are bounds on failure, never expected durations, so a busy machine makes a test slower, not red; each
# test's pytest timeout is the sum of the bounds it may wait for.
SUBSCRIBED_TIMEOUT = 60.0  # a started sidecar lists its subscriptions
DELIVERY_TIMEOUT = 90.0  # the messages published so far reached the app
BATCH = 200  # messages published at a time to the two members of one app id
MAX_BATCHES = 5  # ... until both took part: a late member (a slow Kafka rebalance) gets the later ones


@pytest.fixture(params=["redis", "kafka"])
def resources(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "redis":
        metadata = {"redisHost": require_redis(), "processingTimeout": "2s", "redeliverInterval": "0.5s"}
        spec = component_yaml("pubsub", "pubsub.redis", metadata)
    else:
        brokers = request.getfixturevalue("kafka_brokers")
        spec = component_yaml(
            "pubsub", "pubsub.kafka", {"brokers": brokers, "authType": "none", "initialOffset": "oldest"}
        )
    (tmp_path / "pubsub.yaml").write_text(spec)
    return tmp_path


class Subscriber:
    """A subscriber app process and its sidecar process."""

    def __init__(
        self, resources: Path, app_id: str, topic: str, out: Path, delay_ms: int = 0, programmatic: bool = True
    ) -> None:
        self.resources, self.app_id, self.out = resources, app_id, out
        self.app_port, self.http_port = free_port(), 0
        env = {**os.environ, "PORT": str(self.app_port), "TOPIC": topic, "OUT": str(out), "DELAY_MS": str(delay_ms)}
        env["PROGRAMMATIC"] = "1" if programmatic else "0"
        self.app = subprocess.Popen([sys.executable, str(APP)], env=env)
        self.sidecar = self._sidecar()

    def _sidecar(self) -> subprocess.Popen[str]:
        def launch(port: int) -> subprocess.Popen[str]:
            args = ["--app-id", self.app_id, "--app-port", str(self.app_port), "--dapr-http-port", str(port)]
            return layotto(*args, "--resources-path", str(self.resources))

        self.http_port, process = started(launch)
        return process

    def restart_sidecar(self) -> None:
        self.sidecar = self._sidecar()

    def kill_sidecar(self) -> None:
        self.sidecar.send_signal(signal.SIGKILL)
        self.sidecar.communicate(timeout=30)

    def received(self) -> list[str]:
        return self.out.read_text().split() if self.out.exists() else []

    def close(self) -> None:
        if self.sidecar.poll() is None:
            stop(self.sidecar)
        self.app.terminate()
        self.app.wait(timeout=30)


@pytest.fixture
def publisher(resources: Path) -> Iterator[int]:
    port, process = started(
        lambda port: layotto("--app-id", "publisher", "--dapr-http-port", str(port), "--resources-path", str(resources))
    )
    yield port
    stop(process)


def publish(port: int, topic: str, messages: range) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for n in messages:
            response = client.post(f"/v1.0/publish/pubsub/{topic}", content=str(n))
            assert response.status_code == 204, response.text


def wait_until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def subscribed(subscriber: Subscriber) -> bool:
    try:
        metadata = httpx.get(f"http://127.0.0.1:{subscriber.http_port}/v1.0/metadata", timeout=30).json()
    except httpx.TransportError:  # e.g. a slow answer on a busy machine: ask again
        return False
    return bool(metadata["subscriptions"])


@pytest.mark.timeout(3 * START_TIMEOUT + SUBSCRIBED_TIMEOUT + 2 * DELIVERY_TIMEOUT)
def test_delivery_through_another_sidecar_survives_a_kill_9(resources: Path, publisher: int, tmp_path: Path) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:10]}"
    subscriber = Subscriber(resources, "orders", topic, tmp_path / "received.txt", delay_ms=20)
    try:
        wait_until(lambda: subscribed(subscriber), SUBSCRIBED_TIMEOUT)
        time.sleep(1)  # group membership settles
        publish(publisher, topic, range(200))
        wait_until(lambda: len(subscriber.received()) >= 30, DELIVERY_TIMEOUT)
        subscriber.kill_sidecar()  # mid-stream: some messages received but not acknowledged
        publish(publisher, topic, range(200, 300))
        subscriber.restart_sidecar()
        wait_until(lambda: set(subscriber.received()) >= {str(n) for n in range(300)}, DELIVERY_TIMEOUT)
    finally:
        subscriber.close()


@pytest.mark.timeout(4 * START_TIMEOUT + 3 * SUBSCRIBED_TIMEOUT + (MAX_BATCHES + 1) * DELIVERY_TIMEOUT)
def test_one_app_id_shares_the_work_and_two_app_ids_each_get_everything(
    resources: Path, publisher: int, tmp_path: Path
) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:10]}"
    first = Subscriber(resources, "workers", topic, tmp_path / "w1.txt", delay_ms=5)
    second = Subscriber(resources, "workers", topic, tmp_path / "w2.txt", delay_ms=5)
    audit = Subscriber(resources, "audit", topic, tmp_path / "audit.txt")
    try:
        for subscriber in (first, second, audit):
            wait_until(lambda s=subscriber: subscribed(s), SUBSCRIBED_TIMEOUT)
        time.sleep(3)  # a head start for Kafka's rebalance; the batches below do not rely on it
        everything: set[str] = set()
        for batch in range(MAX_BATCHES):
            numbers = range(batch * BATCH, (batch + 1) * BATCH)
            publish(publisher, topic, numbers)
            everything |= {str(n) for n in numbers}
            wait_until(lambda sent=everything: set(first.received()) | set(second.received()) >= sent, DELIVERY_TIMEOUT)
            if first.received() and second.received():
                break
        wait_until(lambda: set(audit.received()) >= everything, DELIVERY_TIMEOUT)
        assert first.received() and second.received()  # both workers took part
    finally:
        for subscriber in (first, second, audit):
            subscriber.close()


@pytest.mark.timeout(2 * START_TIMEOUT + SUBSCRIBED_TIMEOUT + DELIVERY_TIMEOUT)
def test_a_subscription_declared_in_yaml(resources: Path, publisher: int, tmp_path: Path) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:10]}"
    own = tmp_path / "declared"
    own.mkdir()
    (own / "pubsub.yaml").write_text((resources / "pubsub.yaml").read_text())
    (own / "subscription.yaml").write_text(
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {name: declared}\n"
        f"spec:\n  pubsubname: pubsub\n  topic: {topic}\n  routes:\n    default: /messages\nscopes: [declared-app]\n"
    )
    subscriber = Subscriber(own, "declared-app", topic, tmp_path / "got.txt", programmatic=False)
    try:
        wait_until(lambda: subscribed(subscriber), SUBSCRIBED_TIMEOUT)
        time.sleep(1)
        publish(publisher, topic, range(20))
        wait_until(lambda: set(subscriber.received()) >= {str(n) for n in range(20)}, DELIVERY_TIMEOUT)
    finally:
        subscriber.close()
