"""Tracing, configured as daprd's ``spec.tracing``; imported only when tracing is on.

Spans (service name = the app id, instrumentation scope ``dapr-diagnostics``):

* every API call: a server span named as daprd names it (the URL path; ``CallLocal/<app>/<method>`` for an
  invocation), with daprd's attributes (``dapr.api``, ``dapr.status_code``, ``db.*`` for state and secrets,
  ``messaging.system`` for publishing, ``rpc.service`` for invocations, every ``dapr-*`` header);
* every component call: a client span (``TracingLayer``) with the database or messaging attributes;
* every invocation hop received from another sidecar: a server span ``CallLocal/<app>/<method>``;
* every pub/sub delivery to the app: a client span ``pubsub/<topic>``, its parent the CloudEvent's
  ``traceparent``.

Propagation is W3C, read and written by daprd's rules: the incoming ``traceparent``/``tracestate`` is the
parent, and the request's headers are rewritten to the sidecar's own span before the route runs, so
whatever passes them on today (the invoker to the app and the next sidecar, CloudEvents' ``traceid``/
``traceparent``/``tracestate``) carries this span; the response carries it too, as daprd's does. ``baggage``
passes through untouched and is echoed back. The sampler is daprd's, parent-based over a trace-id ratio of
``samplingRate``; a rate of 0 switches tracing off entirely (no span is ever created). Spans are recorded
lean and exported in the background (``app.observability.spans``): Zipkin, OTLP over gRPC or HTTP (the
OpenTelemetry SDK's exporters), stdout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import Token
from http import HTTPStatus
from typing import Any, TypeVar

from opentelemetry.sdk.trace.export import SpanExporter

from app.observability.spans import Exporting, Sink, Span, SpanRecorder
from app.observability.zipkin import SdkSink, StdoutExporter, ZipkinSink
from building_blocks.block import ComponentCall, LayerOrder
from building_blocks.configuration_spec import OtelSpec, TracingSpec
from building_blocks.errors import Operation

__all__ = ("ServerSpan", "Tracing", "TracingLayer", "parse_traceparent")

T = TypeVar("T")
#: daprd's ``MaxTracestateLen``: a longer ``tracestate`` is not passed on.
MAX_TRACESTATE = 512
_EXPORT_DELAY = 1.0
_DESCRIBED_LIMIT = 1024
_TRACE_HEADERS = (b"traceparent", b"tracestate")
_INVOKE = "/v1.0/invoke/"
_HEX = frozenset(b"0123456789abcdef")
#: Blocks whose calls are database calls for the span attributes (daprd's ``db.system`` values where it has one).
_DB_SYSTEMS = {
    "state": "state",
    "secretstores": "secrets",
    "configuration": "configuration",
    "lock": "lock",
    "sequencer": "sequencer",
}

Headers = list[tuple[bytes, bytes]]
Parent = tuple[int, int, int, str]


def parse_traceparent(headers: Headers) -> Parent | None:
    """The remote parent in ``traceparent`` (and ``tracestate``), by daprd's ``SpanContextFromW3CString``: at
    least 4 dash-separated parts, a 2-hex version below ``ff`` (``00`` has exactly 4 parts), a 32-hex
    trace id and 16-hex span id, not all zeros, hex flags. Anything else: no parent (a new root)."""
    parent = state = b""
    for name, value in headers:
        if name == b"traceparent":
            parent = value.strip()
        elif name == b"tracestate":
            state = value.strip()
    if not parent:
        return None
    parts = parent.split(b"-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == b"ff" or (parts[0] == b"00" and len(parts) != 4):
        return None
    version, trace_id, span_id, flags = parts[:4]
    if len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
        return None
    if not _HEX.issuperset(version + trace_id + span_id + flags):
        return None
    trace_number, span_number = int(trace_id, 16), int(span_id, 16)
    if not trace_number or not span_number:
        return None
    trace_state = state.decode("latin-1") if len(state) <= MAX_TRACESTATE else ""
    return trace_number, span_number, int(flags, 16), trace_state


def _otlp(spec: OtelSpec) -> SpanExporter:
    headers = dict(spec.headers) or None
    if spec.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(
            endpoint=spec.endpoint_address, insecure=not spec.is_secure, headers=headers, timeout=spec.timeout
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    scheme = "https" if spec.is_secure else "http"
    return HttpExporter(endpoint=f"{scheme}://{spec.endpoint_address}/v1/traces", headers=headers, timeout=spec.timeout)


def sinks(spec: TracingSpec, service: str) -> list[Sink]:
    """The exporters ``spec`` configures: Zipkin, OTLP (gRPC or HTTP), stdout."""
    found: list[Sink] = []
    if spec.zipkin_endpoint:
        found.append(ZipkinSink(spec.zipkin_endpoint, service))
    if spec.otel is not None and spec.otel.endpoint_address:
        found.append(SdkSink(_otlp(spec.otel), service))
    if spec.stdout:
        found.append(SdkSink(StdoutExporter(), service))
    return found


def _api_attributes(method: str, path: str, query: bytes, headers: Headers, client: Any) -> tuple[str, dict[str, Any]]:
    """The span name and attributes daprd gives an HTTP API call."""
    attributes: dict[str, Any] = {
        "dapr.protocol": "http",
        "dapr.api": f"{method} {path}",
        "http.request.method": method,
        "url.full": path + ("?" + query.decode("latin-1") if query else ""),
    }
    if client:
        attributes["server.address"], attributes["server.port"] = client[0], client[1]
    parts = path.split("/")
    name = path
    if path.startswith(_INVOKE) and len(parts) > 5 and parts[4] == "method":
        app = parts[3]
        name = f"CallLocal/{app}/{'/'.join(parts[5:])}"
        attributes["rpc.service"] = "ServiceInvocation"
        attributes["net.peer.name"] = app
    elif len(parts) > 3 and parts[2] in ("state", "secrets"):
        system = parts[2]
        attributes["db.system"] = attributes["db.connection_string"] = system
        attributes["db.statement"] = attributes["dapr.api"]
        attributes["db.name"] = parts[3]
    elif len(parts) > 3 and parts[2] == "publish":
        attributes["messaging.system"] = "pubsub"
    for header, value in headers:
        if header.startswith(b"dapr-"):
            attributes[header.decode("latin-1")] = value.decode("latin-1")
    return name, attributes


class ServerSpan:
    """A span made current for the rest of the request (``end`` restores the previous one, in the same task)."""

    __slots__ = ("headers", "span", "token")

    def __init__(self, span: Span, token: Token[Span | None]) -> None:
        self.span = span
        self.token = token
        #: ``traceparent`` (and ``tracestate``) of this span: what is passed on, and answered.
        self.headers: Headers = [(b"traceparent", span.traceparent())]
        if span.trace_state:
            self.headers.append((b"tracestate", span.trace_state.encode("latin-1")))

    def end(self, status: int) -> None:
        span = self.span
        error = ""
        if span.sampled:
            span.set_attribute("dapr.status_code", str(status))
            if status >= 400:
                try:
                    error = f"Code({status}): {HTTPStatus(status).phrase}"
                except ValueError:
                    error = f"Code({status}): Unknown"
        span.end(error)
        SpanRecorder.restore(self.token)


class Tracing:
    """The span recorder and exporters of one sidecar, and the spans it makes."""

    def __init__(self, spec: TracingSpec, app_id: str) -> None:
        self.exporting = Exporting(sinks(spec, app_id), _EXPORT_DELAY)
        self.recorder = SpanRecorder(spec.sampling_rate, self.exporting)

    def _start(self, name: str, kind: str, headers: Headers, attributes: dict[str, Any]) -> ServerSpan:
        span = self.recorder.start(name, kind, attributes, parse_traceparent(headers))
        return ServerSpan(span, SpanRecorder.make_current(span))

    def server(self, scope: MutableMapping[str, Any]) -> ServerSpan:
        """The span of one API call; the request's trace headers now name it (what is passed on downstream)."""
        headers: Headers = scope["headers"]
        name, attributes = _api_attributes(
            scope["method"], scope["path"], scope.get("query_string", b""), headers, scope.get("client")
        )
        started = self._start(name, "SERVER", headers, attributes)
        scope["headers"] = [h for h in headers if h[0] not in _TRACE_HEADERS] + started.headers
        return started

    def hop(self, scope: MutableMapping[str, Any], app_id: str, method: str) -> ServerSpan:
        """The span of an invocation another sidecar delivers to this one's app (daprd's callee span)."""
        headers: Headers = scope["headers"]
        attributes = {"rpc.service": "ServiceInvocation", "dapr.invoke_method": method, "dapr.protocol": "http"}
        started = self._start(f"CallLocal/{app_id}/{method}", "SERVER", headers, attributes)
        scope["headers"] = [h for h in headers if h[0] not in _TRACE_HEADERS] + started.headers
        return started

    def delivery(self, pubsub: str, topic: str, headers: dict[str, str]) -> ServerSpan:
        """The span of one pub/sub delivery to the app; ``headers`` (to the app) now name it."""
        raw = [(name.encode(), headers[name].encode("latin-1")) for name in ("traceparent", "tracestate")
               if name in headers]  # fmt: skip
        attributes = {"messaging.system": "pubsub", "messaging.destination.name": topic, "pubsub.name": pubsub}
        started = self._start(f"pubsub/{topic}", "CLIENT", raw, attributes)
        for name in ("traceparent", "tracestate"):
            headers.pop(name, None)
        headers.update((name.decode(), value.decode("latin-1")) for name, value in started.headers)
        return started

    async def shutdown(self) -> None:
        """Export what is queued, then stop the exporters."""
        await self.exporting.shutdown()


class TracingLayer:
    """A client span around every component call (``LayerOrder.TRACING``: outermost, so it covers retries)."""

    order = LayerOrder.TRACING

    def __init__(self, tracing: Tracing) -> None:
        self.recorder = tracing.recorder
        #: Span name and attributes per (block, operation, store, topic): the same few over and over.
        self._described: dict[tuple[str, Operation, str, str], tuple[str, dict[str, Any]]] = {}

    async def __call__(self, call: ComponentCall, proceed: Callable[[], Awaitable[T]]) -> T:
        block = call.block.type_prefix
        key = (block, call.operation, call.store, call.key if call.operation is Operation.PUBSUB_PUBLISH else "")
        described = self._described.get(key)
        if described is None:
            described = self._describe(block, call)
            if len(self._described) >= _DESCRIBED_LIMIT:
                self._described.clear()
            self._described[key] = described
        span = self.recorder.start(described[0], "CLIENT", described[1])
        try:
            result = await proceed()
        except BaseException as exc:
            span.end(str(exc) or type(exc).__name__)
            raise
        span.end()
        return result

    @staticmethod
    def _describe(block: str, call: ComponentCall) -> tuple[str, dict[str, Any]]:
        if call.operation is Operation.PUBSUB_PUBLISH:
            attributes: dict[str, Any] = {
                "messaging.system": "pubsub",
                "messaging.destination.name": call.key,
                "pubsub.name": call.store,
            }
        else:
            system = _DB_SYSTEMS.get(block, block)
            attributes = {
                "db.system": system,
                "db.connection_string": system,
                "db.name": call.store,
                "db.operation": str(call.operation).partition(".")[2],
            }
        return f"{call.operation} {call.store}", attributes
