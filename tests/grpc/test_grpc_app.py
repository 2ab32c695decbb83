"""An app that speaks gRPC (``--app-protocol grpc``), written with the SDK's ``dapr.ext.grpc.App``: the sidecar
lists its subscriptions, delivers with Dapr's statuses, checks its health, and invocations cross between it
and an HTTP app through two sidecars, both ways, over both fronts."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.clients import DaprClient

from tests.e2e.test_cli import free_port
from tests.grpc.harness import GrpcSidecar, grpc_sidecar, point_sdk_at

ECHO = Path(__file__).resolve().parent.parent / "e2e" / "apps" / "echo.py"


@dataclass
class Mesh:
    grpc_app: GrpcSidecar  # the sidecar of the gRPC app
    http_app: GrpcSidecar  # the sidecar of an HTTP app (tests/e2e/apps/echo.py)
    topic: str
    record: Path

    def records(self, kind: str) -> list[dict[str, object]]:
        if not self.record.exists():
            return []
        lines = self.record.read_text().splitlines()
        return [entry for entry in map(json.loads, lines) if entry["kind"] == kind]

    def wait_for(self, kind: str, count: int, timeout: float = 30) -> list[dict[str, object]]:
        """Polls the app's record (a busy machine delivers late; only a missing delivery fails)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.records(kind)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{count} {kind} records expected, got {self.records(kind)}")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    home = tmp_path_factory.mktemp("mesh")
    record = home / "record.jsonl"
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    app = [sys.executable, "-m", "tests.grpc.apps.grpc_app"]
    grpc_env = {"APP_PROTOCOL": "grpc", "TOPIC": topic, "RECORD": str(record)}
    health = ["--enable-app-health-check", "--app-health-probe-interval", "1"]
    with (
        grpc_sidecar(home, "--app-port", str(free_port()), *health, env=grpc_env, app_id="grpcapp", command=app) as g,
        grpc_sidecar(home, "--app-port", str(free_port()), app_id="httpapp", command=[sys.executable, str(ECHO)]) as h,
    ):
        subscribed(g, topic)
        yield Mesh(g, h, topic, record)


def subscribed(sidecar: GrpcSidecar, topic: str, timeout: float = 30) -> list[dict[str, object]]:
    """The sidecar's subscriptions once ``topic`` is among them: they start once the app is healthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metadata = httpx.get(f"{sidecar.http_url}/v1.0/metadata").json()
        if any(s["topic"] == topic for s in metadata["subscriptions"]):
            return list(metadata["subscriptions"])
        time.sleep(0.05)
    raise AssertionError(f"no subscription to {topic} after {timeout}s")


def publish(sidecar: GrpcSidecar, topic: str, data: dict[str, object]) -> None:
    response = httpx.post(f"{sidecar.http_url}/v1.0/publish/pubsub/{topic}", json=data)
    assert response.status_code == 204, response.text


def test_subscriptions_come_from_list_topic_subscriptions(mesh: Mesh) -> None:
    metadata = httpx.get(f"{mesh.grpc_app.http_url}/v1.0/metadata").json()
    assert metadata["appConnectionProperties"]["protocol"] == "grpc"
    listed = [(s["pubsubname"], s["topic"]) for s in subscribed(mesh.grpc_app, mesh.topic)]
    assert listed == [("pubsub", mesh.topic)]


def test_deliveries_reach_on_topic_event_and_retry_redelivers(mesh: Mesh) -> None:
    before = len(mesh.records("event"))
    publish(mesh.grpc_app, mesh.topic, {"n": 1})
    [delivered] = mesh.wait_for("event", before + 1)[before:]
    assert delivered["data"] == {"n": 1} and delivered["topic"] == mesh.topic
    publish(mesh.grpc_app, mesh.topic, {"n": 2, "answer": "retry"})
    retried = mesh.wait_for("event", before + 3)[before + 1 :]
    assert [entry["data"] for entry in retried] == [{"n": 2, "answer": "retry"}] * 2  # RETRY, then once more
    assert retried[0]["id"] == retried[1]["id"]
    time.sleep(1)
    assert len(mesh.records("event")) == before + 3  # SUCCESS the second time: no third delivery


def test_http_app_invokes_the_grpc_app(mesh: Mesh) -> None:
    response = httpx.post(
        f"{mesh.http_app.http_url}/v1.0/invoke/grpcapp/method/echo",
        content=b"hello",
        headers={"content-type": "text/plain"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"echo": "hello", "content_type": "text/plain", "caller": "httpapp"}
    failed = httpx.post(f"{mesh.http_app.http_url}/v1.0/invoke/grpcapp/method/fail", content=b"x", timeout=30)
    assert failed.status_code == 500  # the app's UNKNOWN, as daprd maps it
    assert failed.json()["message"] == "Exception calling application: the app failed"


@pytest.mark.filterwarnings("ignore:invoke_method with protocol gRPC is deprecated:DeprecationWarning")
def test_grpc_clients_invoke_both_apps(mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    from dapr.conf import settings

    monkeypatch.setattr(settings, "DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    point_sdk_at(monkeypatch, mesh.grpc_app)  # the gRPC app's sidecar calls the HTTP app
    with DaprClient() as client:
        answer = client.invoke_method(
            "httpapp",
            "orders/7",
            data=b'{"a": 1}',
            content_type="application/json",
            http_verb="PUT",
            http_querystring=(("x", "1"),),
        )
        echoed = json.loads(answer.data)
        assert (echoed["method"], echoed["path"], echoed["query"], echoed["body"]) == (
            "PUT",
            "/orders/7",
            "x=1",
            '{"a": 1}',
        )
        with pytest.raises(grpc.RpcError) as missing:
            client.invoke_method("httpapp", "status/404", data=b"", http_verb="GET")
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    point_sdk_at(monkeypatch, mesh.http_app)  # the HTTP app's sidecar calls the gRPC app over gRPC
    with DaprClient() as client:
        answer = client.invoke_method("grpcapp", "echo", data=b"ping", http_verb="POST")
        assert json.loads(answer.data)["echo"] == "ping"


def test_dapr_app_id_metadata_proxies_unary_calls_to_the_app(mesh: Mesh) -> None:
    """A service the sidecar does not host, called with ``dapr-app-id``: through the gRPC app's own sidecar,
    and through another app's sidecar (across the hop)."""
    from dapr.proto.runtime.v1 import appcallback_pb2_grpc
    from google.protobuf import empty_pb2

    for sidecar in (mesh.grpc_app, mesh.http_app):
        with grpc.insecure_channel(sidecar.grpc_address) as channel:
            stub = appcallback_pb2_grpc.AppCallbackHealthCheckStub(channel)
            target = (("dapr-app-id", "grpcapp"),)
            stub.HealthCheck(empty_pb2.Empty(), metadata=target, timeout=30)
            nothing: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/example.Nothing/Here")
            with pytest.raises(grpc.RpcError) as unknown:  # the app has no such method: its own answer
                nothing(b"", metadata=target, timeout=30)
            assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
            with pytest.raises(grpc.RpcError) as no_target:
                stub.HealthCheck(empty_pb2.Empty(), timeout=30)
            assert no_target.value.code() == grpc.StatusCode.UNIMPLEMENTED
