"""Exporters: Zipkin's JSON v2 written directly (``spec.tracing.zipkin``), and OpenTelemetry's own exporters
(OTLP over gRPC or HTTP, ``spec.tracing.otel``; stdout) fed SDK ``ReadableSpan``s.

Zipkin's format is a list of flat JSON objects; orjson writes a batch in a few microseconds a span, where
the SDK's Zipkin encoder took about a hundred. The batch is POSTed from the event loop over one kept-alive
connection, written whole; the SDK's exporters, which block, are called in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import Sequence
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode, TraceFlags, TraceState

from app.observability.spans import Span

__all__ = ("SdkSink", "StdoutExporter", "ZipkinSink", "zipkin_json")

log = logging.getLogger("layotto.trace")
_KINDS = {"SERVER": SpanKind.SERVER, "CLIENT": SpanKind.CLIENT}


def zipkin_json(spans: Sequence[Span], service: str) -> bytes:
    """A batch in Zipkin's JSON v2 (``POST /api/v2/spans``); an error sets ``error`` and ``otel.status_code``."""
    endpoint = {"serviceName": service}
    out = []
    for span in spans:
        tags = {name: value if isinstance(value, str) else str(value) for name, value in span.attributes.items()}
        if span.error:
            tags["otel.status_code"] = "ERROR"
            tags["error"] = span.error
        encoded: dict[str, Any] = {
            "traceId": f"{span.trace_id:032x}",
            "id": f"{span.span_id:016x}",
            "name": span.name,
            "kind": span.kind,
            "timestamp": span.start_time // 1000,
            "duration": max(1, (span.end_time - span.start_time) // 1000),
            "localEndpoint": endpoint,
            "tags": tags,
        }
        if span.parent_id:
            encoded["parentId"] = f"{span.parent_id:016x}"
        out.append(encoded)
    return orjson.dumps(out)


class ZipkinSink:
    """POSTs batches to a Zipkin collector's ``endpointAddress`` (e.g. ``http://localhost:9411/api/v2/spans``)
    from the event loop, over one kept-alive connection: one write of head and body, the answer's head read and
    its body (if any) skipped. A general HTTP client cost the sidecar a tenth of its CPU here under load."""

    def __init__(self, url: str, service: str, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.secure else 80)
        target = (parts.path or "/api/v2/spans") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._head = (
            f"POST {target} HTTP/1.1\r\nHost: {host}:{self.port}\r\ncontent-type: application/json\r\n"
        ).encode("latin-1")
        self.url = url
        self.service = service
        self.timeout = timeout
        self._connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _send(self, body: bytes) -> int:
        if self._connection is None:
            ssl = True if self.secure else None
            self._connection = await asyncio.open_connection(self.host, self.port, ssl=ssl)
        reader, writer = self._connection
        writer.write(self._head + b"content-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if head.startswith(b"HTTP/1.0"):
            self._connection = None  # HTTP/1.0 closes after the answer
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or 0)
            elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                self._connection = None
        if length:
            await reader.readexactly(length)
        if self._connection is None:
            writer.close()
        return status

    async def export(self, spans: Sequence[Span]) -> None:
        body = zipkin_json(spans, self.service)
        for attempt in (1, 2):  # a kept-alive connection the collector closed is opened again, once
            try:
                async with asyncio.timeout(self.timeout):
                    status = await self._send(body)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
                await self.shutdown()
                if attempt == 2:
                    raise
                continue
            if status >= 300:
                raise RuntimeError(f"{self.url} answered {status}")
            return

    async def shutdown(self) -> None:
        if self._connection is not None:
            writer = self._connection[1]
            self._connection = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class SdkSink:
    """An OpenTelemetry ``SpanExporter`` (OTLP, stdout) fed ``ReadableSpan``s built from ``Span``s."""

    def __init__(self, exporter: SpanExporter, service: str) -> None:
        self.exporter = exporter
        self.resource = Resource.create({"service.name": service})
        self.scope = InstrumentationScope("dapr-diagnostics")

    def _readable(self, span: Span) -> ReadableSpan:
        state = TraceState.from_header([span.trace_state]) if span.trace_state else None
        flags = TraceFlags(span.flags)
        context = trace.SpanContext(span.trace_id, span.span_id, False, flags, state)
        parent = trace.SpanContext(span.trace_id, span.parent_id, True, flags, state) if span.parent_id else None
        status = Status(StatusCode.ERROR, span.error) if span.error else Status(StatusCode.UNSET)
        return ReadableSpan(
            span.name,
            context,
            parent,
            self.resource,
            dict(span.attributes),
            kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=self.scope,
        )

    def _export(self, spans: Sequence[Span]) -> None:
        result = self.exporter.export([self._readable(span) for span in spans])
        if result is not SpanExportResult.SUCCESS:
            raise RuntimeError(f"{type(self.exporter).__name__} failed")

    async def export(self, spans: Sequence[Span]) -> None:
        await asyncio.to_thread(self._export, spans)  # the SDK's exporters block

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.exporter.shutdown)


class StdoutExporter(SpanExporter):
    """``stdout: true``: one log line per span on ``layotto.trace``, in daprd's words."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            context = span.context
            parent = f"{span.parent.span_id:016x}" if span.parent is not None else ""
            log.info(
                "[%s] Trace: %032x Span: %s/%016x Time: [%s ->  %s] Annotations: []",
                span.name, context.trace_id if context else 0, parent, context.span_id if context else 0,
                span.start_time, span.end_time,
            )  # fmt: skip
        return SpanExportResult.SUCCESS
