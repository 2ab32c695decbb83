"""Tracing with OpenTelemetry, configured as daprd's ``spec.tracing``; imported only when tracing is on.

Spans (tracer ``dapr-diagnostics``, resource ``service.name`` = the app id):

* every API call: a server span named as daprd names it (the URL path; ``CallLocal/<app>/<method>`` for an
  invocation), with daprd's attributes (``dapr.api``, ``dapr.status_code``, ``db.*`` for state and secrets,
  ``messaging.system`` for publishing, ``rpc.service`` for invocations, every ``dapr-*`` header);
* every component call: a client span (``TracingLayer``) with the database or messaging attributes;
* every invocation hop received from another sidecar: a server span ``CallLocal/<app>/<method>``;
* every pub/sub delivery to the app: a client span ``pubsub/<topic>``, its parent the CloudEvent's
  ``traceparent``.

Propagation is W3C: the incoming ``traceparent``/``tracestate`` is the parent, and the request's headers are
rewritten to the sidecar's own span before the route runs, so whatever passes them on today (the invoker to
the app and the next sidecar, CloudEvents' ``traceid``/``traceparent``/``tracestate``) carries this span;
the response carries it too, as daprd's does. ``baggage`` passes through untouched, and is echoed back.
The sampler is daprd's: parent-based over a trace-id ratio of ``samplingRate``; a rate of 0 switches tracing
off entirely (no span is ever created).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from http import HTTPStatus
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from building_blocks.block import ComponentCall, LayerOrder
from building_blocks.configuration_spec import OtelSpec, TracingSpec
from building_blocks.errors import Operation

__all__ = ("ServerSpan", "Tracing", "TracingLayer")

log = logging.getLogger("layotto.trace")
T = TypeVar("T")
TRACER = "dapr-diagnostics"
#: daprd's ``MaxTracestateLen``: a longer ``tracestate`` is not passed on.
MAX_TRACESTATE = 512
_EXPORT_DELAY_MS = 1000
_TRACE_HEADERS = (b"traceparent", b"tracestate")
_INVOKE = "/v1.0/invoke/"
#: Blocks whose calls are database calls for the span attributes (daprd's ``db.system`` values where it has one).
_DB_SYSTEMS = {
    "state": "state",
    "secretstores": "secrets",
    "configuration": "configuration",
    "lock": "lock",
    "sequencer": "sequencer",
}

Headers = list[tuple[bytes, bytes]]


class _Carrier:
    """OpenTelemetry's getter/setter over ASGI header lists (names are lower-case bytes)."""

    @staticmethod
    def get(carrier: Headers, key: str) -> list[str] | None:
        name = key.encode()
        values = [value.decode("latin-1") for header, value in carrier if header == name]
        return values or None

    @staticmethod
    def keys(carrier: Headers) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


class StdoutExporter(SpanExporter):
    """``stdout: true``: one log line per span on ``layotto.trace``, in daprd's words."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            context = span.context
            parent = f"{span.parent.span_id:016x}" if span.parent is not None else ""
            events = ", ".join(event.name for event in span.events)
            log.info(
                "[%s] Trace: %032x Span: %s/%016x Time: [%s ->  %s] Annotations: [%s]",
                span.name,
                context.trace_id if context else 0,
                parent,
                context.span_id if context else 0,
                span.start_time,
                span.end_time,
                events,
            )
        return SpanExportResult.SUCCESS


def _otlp(spec: OtelSpec) -> SpanExporter:
    headers = dict(spec.headers)
    if spec.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(
            endpoint=spec.endpoint_address, insecure=not spec.is_secure, headers=headers or None, timeout=spec.timeout
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    scheme = "https" if spec.is_secure else "http"
    return HttpExporter(
        endpoint=f"{scheme}://{spec.endpoint_address}/v1/traces", headers=headers or None, timeout=spec.timeout
    )


def exporters(spec: TracingSpec) -> list[SpanExporter]:
    """The exporters ``spec`` configures: Zipkin, OTLP (gRPC or HTTP), stdout."""
    found: list[SpanExporter] = []
    if spec.zipkin_endpoint:
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        found.append(ZipkinExporter(endpoint=spec.zipkin_endpoint))
    if spec.otel is not None and spec.otel.endpoint_address:
        found.append(_otlp(spec.otel))
    if spec.stdout:
        found.append(StdoutExporter())
    return found


def _api_attributes(method: str, path: str, query: bytes, headers: Headers, client: Any) -> tuple[str, dict[str, Any]]:
    """The span name and attributes daprd gives an HTTP API call."""
    url = path + ("?" + query.decode("latin-1") if query else "")
    attributes: dict[str, Any] = {
        "dapr.protocol": "http",
        "dapr.api": f"{method} {path}",
        "http.request.method": method,
        "url.full": url,
    }
    if client:
        attributes["server.address"], attributes["server.port"] = client[0], client[1]
    parts = path.split("/")
    name = path
    if path.startswith(_INVOKE) and len(parts) > 5 and parts[4] == "method":
        app, invoked = parts[3], "/".join(parts[5:])
        name = f"CallLocal/{app}/{invoked}"
        attributes.update({"rpc.service": "ServiceInvocation", "net.peer.name": app})
    elif len(parts) > 3 and parts[2] in ("state", "secrets"):
        system = parts[2]
        attributes.update(
            {
                "db.system": system,
                "db.connection_string": system,
                "db.statement": f"{method} {path}",
                "db.name": parts[3],
            }
        )
    elif len(parts) > 3 and parts[2] == "publish":
        attributes["messaging.system"] = "pubsub"
    for header, value in headers:
        if header.startswith(b"dapr-"):
            attributes[header.decode("latin-1")] = value.decode("latin-1")
    return name, attributes


class ServerSpan:
    """A span made current for the rest of the request (``end`` detaches it, in the same task)."""

    __slots__ = ("headers", "span", "token")

    def __init__(self, span: trace.Span, token: object, headers: Headers) -> None:
        self.span = span
        self.token = token
        #: ``traceparent`` (and ``tracestate``) of this span, for the response.
        self.headers = headers

    def end(self, status: int) -> None:
        span = self.span
        if span.is_recording():
            span.set_attribute("dapr.status_code", str(status))
            if status >= 400:
                try:
                    text = HTTPStatus(status).phrase
                except ValueError:
                    text = "Unknown"
                span.set_status(Status(StatusCode.ERROR, f"Code({status}): {text}"))
        span.end()
        otel_context.detach(self.token)  # type: ignore[arg-type]


class Tracing:
    """The tracer provider of one sidecar, and the spans it makes."""

    def __init__(self, spec: TracingSpec, app_id: str) -> None:
        sampler = ParentBased(TraceIdRatioBased(spec.sampling_rate))
        self.provider = TracerProvider(resource=Resource.create({"service.name": app_id}), sampler=sampler)
        for exporter in exporters(spec):
            self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=_EXPORT_DELAY_MS))
        self.tracer = self.provider.get_tracer(TRACER)
        self.propagator = TraceContextTextMapPropagator()
        self.carrier = _Carrier()

    def _start(self, name: str, kind: SpanKind, headers: Headers, attributes: dict[str, Any]) -> ServerSpan:
        """A span whose parent is the W3C context in ``headers``, made current; its own headers to pass on."""
        parent = self.propagator.extract(headers, getter=self.carrier)  # type: ignore[arg-type]
        span = self.tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        current = trace.set_span_in_context(span, parent)
        token = otel_context.attach(current)
        out: dict[str, str] = {}
        self.propagator.inject(out, context=current)
        own = [(b"traceparent", out["traceparent"].encode())] if "traceparent" in out else []
        state = out.get("tracestate", "")
        if state and len(state) <= MAX_TRACESTATE:
            own.append((b"tracestate", state.encode()))
        return ServerSpan(span, token, own)

    def server(self, scope: MutableMapping[str, Any]) -> ServerSpan:
        """The span of one API call; the request's trace headers now name it (what is passed on downstream)."""
        headers: Headers = scope["headers"]
        name, attributes = _api_attributes(
            scope["method"], scope["path"], scope.get("query_string", b""), headers, scope.get("client")
        )
        started = self._start(name, SpanKind.SERVER, headers, attributes)
        scope["headers"] = [h for h in headers if h[0] not in _TRACE_HEADERS] + started.headers
        return started

    def hop(self, scope: MutableMapping[str, Any], app_id: str, method: str) -> ServerSpan:
        """The span of an invocation another sidecar delivers to this one's app (daprd's callee span)."""
        headers: Headers = scope["headers"]
        attributes = {"rpc.service": "ServiceInvocation", "dapr.invoke_method": method, "dapr.protocol": "http"}
        started = self._start(f"CallLocal/{app_id}/{method}", SpanKind.SERVER, headers, attributes)
        scope["headers"] = [h for h in headers if h[0] not in _TRACE_HEADERS] + started.headers
        return started

    def delivery(self, pubsub: str, topic: str, headers: dict[str, str]) -> ServerSpan:
        """The span of one pub/sub delivery to the app; ``headers`` (to the app) now name it."""
        raw = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in headers.items()
            if name in ("traceparent", "tracestate")
        ]
        attributes = {"messaging.system": "pubsub", "messaging.destination.name": topic, "pubsub.name": pubsub}
        started = self._start(f"pubsub/{topic}", SpanKind.CLIENT, raw, attributes)
        for name in ("traceparent", "tracestate"):
            headers.pop(name, None)
        headers.update((name.decode(), value.decode()) for name, value in started.headers)
        return started

    def shutdown(self) -> None:
        """Flush what is queued to the exporters, then stop them (blocking: run it off the event loop)."""
        self.provider.shutdown()


class TracingLayer:
    """A client span around every component call (``LayerOrder.TRACING``: outermost, so it covers retries)."""

    order = LayerOrder.TRACING

    def __init__(self, tracing: Tracing) -> None:
        self.tracer = tracing.tracer

    async def __call__(self, call: ComponentCall, proceed: Callable[[], Awaitable[T]]) -> T:
        block = call.block.type_prefix
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
        with self.tracer.start_as_current_span(
            f"{call.operation} {call.store}", kind=SpanKind.CLIENT, attributes=attributes
        ):
            return await proceed()
