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

from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy
from tests.services import require_redis
from tests.sidecar import component_yaml

APP = Path(__file__).parent / "apps" / "subscriber.py"


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
        self.app_port, self.http_port = free_port(), free_port()
        env = {**os.environ, "PORT": str(self.app_port), "TOPIC": topic, "OUT": str(out), "DELAY_MS": str(delay_ms)}
        env["PROGRAMMATIC"] = "1" if programmatic else "0"
        self.app = subprocess.Popen([sys.executable, str(APP)], env=env)
        self.sidecar = self._sidecar()

    def _sidecar(self) -> subprocess.Popen[str]:
        args = ["--app-id", self.app_id, "--app-port", str(self.app_port), "--dapr-http-port", str(self.http_port)]
        process = layotto(*args, "--resources-path", str(self.resources))
        wait_healthy(self.http_port, timeout=30)
        return process

    def restart_sidecar(self) -> None:
        self.sidecar = self._sidecar()

    def kill_sidecar(self) -> None:
        self.sidecar.send_signal(signal.SIGKILL)
        self.sidecar.wait(timeout=10)

    def received(self) -> list[str]:
        return self.out.read_text().split() if self.out.exists() else []

    def close(self) -> None:
        if self.sidecar.poll() is None:
            stop(self.sidecar)
        self.app.terminate()
        self.app.wait(timeout=10)


@pytest.fixture
def publisher(resources: Path) -> Iterator[int]:
    port = free_port()
    process = layotto("--app-id", "publisher", "--dapr-http-port", str(port), "--resources-path", str(resources))
    wait_healthy(port, timeout=30)
    yield port
    stop(process)


def publish(port: int, topic: str, messages: range) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for n in messages:
            response = client.post(f"/v1.0/publish/pubsub/{topic}", content=str(n))
            assert response.status_code == 204, response.text


def wait_until(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def subscribed(subscriber: Subscriber) -> bool:
    metadata = httpx.get(f"http://127.0.0.1:{subscriber.http_port}/v1.0/metadata").json()
    return bool(metadata["subscriptions"])


def test_delivery_through_another_sidecar_survives_a_kill_9(resources: Path, publisher: int, tmp_path: Path) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:10]}"
    subscriber = Subscriber(resources, "orders", topic, tmp_path / "received.txt", delay_ms=20)
    try:
        wait_until(lambda: subscribed(subscriber))
        time.sleep(1)  # group membership settles
        publish(publisher, topic, range(200))
        wait_until(lambda: len(subscriber.received()) >= 30)
        subscriber.kill_sidecar()  # mid-stream: some messages received but not acknowledged
        publish(publisher, topic, range(200, 300))
        subscriber.restart_sidecar()
        wait_until(lambda: set(subscriber.received()) >= {str(n) for n in range(300)}, timeout=90)
    finally:
        subscriber.close()


def test_one_app_id_shares_the_work_and_two_app_ids_each_get_everything(
    resources: Path, publisher: int, tmp_path: Path
) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:10]}"
    first = Subscriber(resources, "workers", topic, tmp_path / "w1.txt", delay_ms=5)
    second = Subscriber(resources, "workers", topic, tmp_path / "w2.txt", delay_ms=5)
    audit = Subscriber(resources, "audit", topic, tmp_path / "audit.txt")
    try:
        for subscriber in (first, second, audit):
            wait_until(lambda s=subscriber: subscribed(s))
        time.sleep(3)  # both group members joined (Kafka rebalances)
        publish(publisher, topic, range(400))
        everything = {str(n) for n in range(400)}
        wait_until(lambda: set(first.received()) | set(second.received()) >= everything, timeout=90)
        wait_until(lambda: set(audit.received()) >= everything, timeout=90)
        assert first.received() and second.received()  # both workers took part
    finally:
        for subscriber in (first, second, audit):
            subscriber.close()


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
        wait_until(lambda: subscribed(subscriber))
        time.sleep(1)
        publish(publisher, topic, range(20))
        wait_until(lambda: set(subscriber.received()) >= {str(n) for n in range(20)})
    finally:
        subscriber.close()
