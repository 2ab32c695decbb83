"""A trace receiver for the tests: the real wire formats, parsed with their real definitions.

No Zipkin, Jaeger or OpenTelemetry Collector installs from Debian or PyPI here, so this stands in for one:
Zipkin's ``POST /api/v2/spans`` (JSON v2), OTLP over HTTP (``POST /v1/traces``, an
``ExportTraceServiceRequest`` protobuf) and OTLP over gRPC (``TraceService/Export``). Every span received
becomes a ``ReceivedSpan``; ``wait_for`` polls until the wanted ones arrived (exporters batch).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

_OTLP_KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    service: str
    attributes: dict[str, str] = field(default_factory=dict)
    via: str = ""


def _value(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    return str(getattr(value, kind)) if kind else ""


def from_otlp(request: trace_service_pb2.ExportTraceServiceRequest, via: str) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                        span.name,
                        _OTLP_KINDS.get(span.kind, "UNSPECIFIED"),
                        resource.get("service.name", ""),
                        {a.key: _value(a.value) for a in span.attributes},
                        via,
                    )
                )
    return spans


def from_zipkin(body: list[dict[str, Any]]) -> list[ReceivedSpan]:
    return [
        ReceivedSpan(
            span["traceId"],
            span["id"],
            span.get("parentId", ""),
            span["name"],
            span.get("kind", ""),
            span.get("localEndpoint", {}).get("serviceName", ""),
            dict(span.get("tags", {})),
            "zipkin",
        )
        for span in body
    ]


class Receiver:
    """Zipkin and OTLP/HTTP on ``http_port``, OTLP/gRPC on ``grpc_port``; use as a context manager."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/api/v2/spans":
                    receiver.add(from_zipkin(json.loads(body)))
                    self.send_response(202)
                elif self.path == "/v1/traces":
                    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    receiver.add(from_otlp(request, "otlp-http"))
                    self.send_response(200)
                    self.send_header("content-type", "application/x-protobuf")
                else:
                    self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Collector(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                receiver.add(from_otlp(request, "otlp-grpc"))
                return trace_service_pb2.ExportTraceServiceResponse()

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http_port = self._http.server_address[1]
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def zipkin_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/api/v2/spans"

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self.spans.extend(spans)

    def wait_for(self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 60) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if done(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"spans not received in {timeout}s: {spans}")
            time.sleep(0.05)

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._grpc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(None)
