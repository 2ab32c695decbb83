"""Tracing against a real receiver: exporters as Dapr configures them, W3C propagation, span structure."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from app.observability.tracing import TracingLayer
from app.settings import DEFAULT_RESOURCES_PATH
from building_blocks.pubsub.base import Message, SubscribeRequest
from tests.e2e.test_cli import free_port
from tests.observability.receiver import ReceivedSpan, Receiver
from tests.sidecar import running_sidecar

APP = Path(__file__).parent / "apps" / "trace_app.py"


def config(path: Path, tracing: str) -> Path:
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: tracing}\nspec:\n  tracing:\n"
        + textwrap.indent(textwrap.dedent(tracing), "    ")
    )
    return path


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def of_trace(trace_id: str, count: int) -> Callable[[list[ReceivedSpan]], bool]:
    return lambda spans: len([s for s in spans if s.trace_id == trace_id]) >= count


@pytest.mark.parametrize("exporter", ["zipkin", "otlp-grpc", "otlp-http"])
async def test_api_and_component_spans_reach_each_exporter(receiver: Receiver, tmp_path: Path, exporter: str) -> None:
    tracing = {
        "zipkin": f"samplingRate: '1'\nzipkin: {{endpointAddress: '{receiver.zipkin_url}'}}",
        "otlp-grpc": f"samplingRate: '1'\notel: {{endpointAddress: '127.0.0.1:{receiver.grpc_port}', protocol: grpc, isSecure: false}}",
        "otlp-http": f"samplingRate: '1'\notel: {{endpointAddress: '127.0.0.1:{receiver.http_port}', protocol: http, isSecure: false}}",
    }[exporter]
    parent, trace_id, caller_span = traceparent()
    async with running_sidecar(
        DEFAULT_RESOURCES_PATH, config_file=config(tmp_path / "c.yaml", tracing), metrics_port=free_port()
    ) as side:
        answer = await side.client.get(
            "/v1.0/state/statestore/k",
            headers={"traceparent": parent, "tracestate": "a=1", "dapr-x": "y", "baggage": "k=v"},
        )
        assert answer.status_code == 204
        assert (await side.client.get("/v1.0/healthz", headers={"traceparent": parent})).status_code == 204
    spans = receiver.wait_for(of_trace(trace_id, 2))
    mine = [s for s in spans if s.trace_id == trace_id]
    assert {s.via for s in mine} == {exporter}
    server = next(s for s in mine if s.kind == "SERVER")
    component = next(s for s in mine if s.kind == "CLIENT")
    assert (server.name, server.parent_id, server.service) == ("/v1.0/state/statestore/k", caller_span, side.app_id)
    assert server.attributes["db.system"] == "state" and server.attributes["db.name"] == "statestore"
    assert (
        server.attributes["dapr.api"] == "GET /v1.0/state/statestore/k"
        and server.attributes["dapr.status_code"] == "204"
    )
    assert server.attributes["dapr-x"] == "y"
    assert (component.name, component.parent_id) == ("state.get statestore", server.span_id)
    assert component.attributes["db.system"] == "state" and component.attributes["db.operation"] == "get"
    # the response names the sidecar's span; the tracestate and baggage go on
    assert answer.headers["traceparent"] == f"00-{trace_id}-{server.span_id}-01"
    assert answer.headers["tracestate"] == "a=1" and answer.headers["baggage"] == "k=v"
    assert not [s for s in mine if "healthz" in s.name]


async def test_published_events_carry_the_api_span(receiver: Receiver, tmp_path: Path) -> None:
    """The CloudEvent's traceid/traceparent/tracestate name the publish call's span, as daprd's do."""
    parent, trace_id, _ = traceparent()
    tracing = f"samplingRate: '1'\nzipkin: {{endpointAddress: '{receiver.zipkin_url}'}}"
    async with running_sidecar(
        DEFAULT_RESOURCES_PATH, config_file=config(tmp_path / "c.yaml", tracing), metrics_port=free_port()
    ) as side:
        received: list[Message] = []
        pubsub = side.runtime.pubsub.component("pubsub")

        async def handler(message: Message) -> None:
            received.append(message)

        subscription = await pubsub.subscribe(SubscribeRequest("traced", "g"), handler)
        answer = await side.client.post("/v1.0/publish/pubsub/traced", json={"a": 1}, headers={"traceparent": parent})
        assert answer.status_code == 204
        for _ in range(200):
            if received:
                break
            await asyncio.sleep(0.01)
        await subscription.close()
    event = orjson.loads(received[0].data)
    spans = receiver.wait_for(of_trace(trace_id, 2))
    server = next(s for s in spans if s.trace_id == trace_id and s.kind == "SERVER")
    publish = next(s for s in spans if s.trace_id == trace_id and s.kind == "CLIENT")
    assert event["traceparent"] == event["traceid"] == f"00-{trace_id}-{server.span_id}-01"
    assert server.attributes["messaging.system"] == "pubsub"
    assert publish.parent_id == server.span_id and publish.attributes["messaging.destination.name"] == "traced"


async def test_sampling_zero_creates_no_span_at_all(tmp_path: Path) -> None:
    async with running_sidecar(
        DEFAULT_RESOURCES_PATH, config_file=config(tmp_path / "c.yaml", "samplingRate: '0'"), metrics_port=free_port()
    ) as side:
        observability = side.runtime.observability
        assert observability is not None and observability.tracing is None
        assert not [
            layer
            for block in side.runtime.core.blocks.values()
            for layer in block.layers
            if isinstance(layer, TracingLayer)
        ]
        answer = await side.client.get("/v1.0/state/statestore/k", headers={"traceparent": traceparent()[0]})
        assert "traceparent" not in answer.headers


def test_without_tracing_opentelemetry_is_not_even_imported(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        from app.main import create_app
        from app.settings import Settings

        async def main():
            app = create_app(Settings(app_id="x", resources_paths=(Path(sys.argv[1]),), metrics_port=0))
            async with app.lifespan():
                pass
            print(sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(DEFAULT_RESOURCES_PATH)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
