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

from app.observability.tracing import TracingLayer, parse_traceparent
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


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        (
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, 1),
        ),
        (
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, 0),
        ),
        (
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, 1),
        ),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", None),  # version 00 has 4 parts
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", None),
        ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", None),
        ("00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01", None),
        ("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", None),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", None),
        ("garbage", None),
    ],
)
def test_traceparent_is_read_by_daprs_rules(header: str, parsed: tuple[int, int, int] | None) -> None:
    found = parse_traceparent([(b"traceparent", header.encode()), (b"tracestate", b"k=v")])
    assert (found[:3] if found else None) == parsed
    if found:
        assert found[3] == "k=v"
    long_state = [(b"traceparent", header.encode()), (b"tracestate", b"k=" + b"v" * 600)]
    if parsed:
        assert parse_traceparent(long_state)[3] == ""  # type: ignore[index]  # over daprd's 512: not passed on


async def test_zipkin_json_is_zipkins_v2_format() -> None:
    from app.observability.spans import Exporting, SpanRecorder
    from app.observability.zipkin import zipkin_json

    exporting = Exporting([], delay=60)
    recorder = SpanRecorder(1.0, exporting)
    root = recorder.start("/v1.0/state/s", "SERVER", {"dapr.api": "GET /v1.0/state/s", "server.port": 5})
    child = recorder.start("state.get s", "CLIENT", {"db.system": "state"}, (root.trace_id, root.span_id, 1, ""))
    child.end()
    root.end("Code(500): Internal Server Error")
    await exporting.shutdown()
    parent_json, child_json = orjson.loads(zipkin_json([root, child], "myapp"))
    assert parent_json["traceId"] == f"{root.trace_id:032x}" and len(parent_json["id"]) == 16
    assert "parentId" not in parent_json and child_json["parentId"] == parent_json["id"]
    assert parent_json["kind"] == "SERVER" and parent_json["localEndpoint"] == {"serviceName": "myapp"}
    assert parent_json["tags"] == {
        "dapr.api": "GET /v1.0/state/s",
        "server.port": "5",
        "otel.status_code": "ERROR",
        "error": "Code(500): Internal Server Error",
    }
    assert parent_json["duration"] >= 1 and parent_json["timestamp"] > 1_600_000_000_000_000


async def test_unsampled_spans_propagate_but_record_nothing() -> None:
    from app.observability.spans import Exporting, SpanRecorder

    exporting = Exporting([], delay=60)
    recorder = SpanRecorder(1.0, exporting)
    span = recorder.start("x", "SERVER", {}, (5, 6, 0, ""))  # the parent said: not sampled
    span.end()
    assert not span.sampled and span.traceparent().endswith(b"-00") and not exporting._queue
    never = SpanRecorder(1e-30, exporting).start("root", "SERVER", {})
    assert not never.sampled
    await exporting.shutdown()


async def test_stdout_exporter_logs_daprs_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", "layotto.trace"):
        async with running_sidecar(
            DEFAULT_RESOURCES_PATH,
            config_file=config(tmp_path / "c.yaml", "samplingRate: '1'\nstdout: true"),
            metrics_port=free_port(),
        ) as side:
            await side.client.get("/v1.0/state/statestore/k")
    lines = [r.getMessage() for r in caplog.records if r.name == "layotto.trace"]
    assert any(line.startswith("[/v1.0/state/statestore/k] Trace: ") for line in lines), lines
    assert any(line.startswith("[state.get statestore] Trace: ") for line in lines), lines


async def test_opentelemetrys_environment_variables_as_daprd_reads_them(receiver: Receiver) -> None:
    """No tracing in a config file: OTEL_EXPORTER_OTLP_ENDPOINT alone sends every span, as daprd does."""
    parent, trace_id, _ = traceparent()
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.grpc_port}",
        "OTEL_EXPORTER_OTLP_HEADERS": "a=b%20c",
    }
    async with running_sidecar(DEFAULT_RESOURCES_PATH, metrics_port=free_port(), environ=environ) as side:
        assert (await side.client.get("/v1.0/state/statestore/k", headers={"traceparent": parent})).status_code == 204
    spans = receiver.wait_for(of_trace(trace_id, 2))
    assert {s.via for s in spans if s.trace_id == trace_id} == {"otlp-grpc"}


def test_environment_fallback_fields() -> None:
    from app.observability.setup import tracing_from_environment
    from building_blocks.configuration_spec import OtelSpec, TracingSpec

    environ = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector:4318/",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "k1=v1, k2=a%3Db",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
    }
    spec = tracing_from_environment(None, environ)
    assert spec == TracingSpec(1.0, otel=OtelSpec("collector:4318", "http", True, (("k1", "v1"), ("k2", "a=b")), 2.5))
    configured = TracingSpec(0.5, otel=OtelSpec("file:4317", "grpc"))
    assert tracing_from_environment(configured, environ) is configured  # the file's endpoint wins
    assert tracing_from_environment(None, {}) is None
