"""Spans recorded lean, exported in the background by OpenTelemetry's exporters (or Zipkin's JSON, directly).

OpenTelemetry's SDK ``Span`` does much per span that a sidecar never uses (locks, limits, attribute
validation, events, self-metrics), and its exporters encode slowly: here a traced state get spent more time
in span bookkeeping and encoding than in the get. So a span is a small record (``Span``), sampled as the
SDK's ``ParentBased(TraceIdRatioBased(rate))`` samples, queued when it ends, and a background thread exports
batches: OTLP and stdout through the SDK's exporters (given SDK ``ReadableSpan``s, built in that thread),
Zipkin as its JSON v2 written with orjson (``app.observability.zipkin``). Nothing is recorded for an
unsampled span; its ids still propagate.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from contextvars import ContextVar, Token
from typing import Any, Protocol

from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

__all__ = ("CURRENT", "Exporting", "Sink", "Span", "SpanRecorder")

log = logging.getLogger("layotto.trace")

#: The span of the request being served (the parent of its component calls' spans).
CURRENT: ContextVar[Span | None] = ContextVar("layotto_span", default=None)
_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT


class Span:
    """One span: ids, name, kind (``SERVER``/``CLIENT``), attributes, times (ns), and an error, if any."""

    __slots__ = (
        "attributes", "end_time", "error", "flags", "kind", "name", "parent_id", "recorder", "span_id",
        "start_time", "trace_id", "trace_state",
    )  # fmt: skip

    def __init__(
        self,
        recorder: SpanRecorder,
        name: str,
        kind: str,
        trace_id: int,
        parent_id: int,
        flags: int,
        trace_state: str,
        attributes: dict[str, Any],
    ) -> None:
        self.recorder = recorder
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = random.getrandbits(64) or 1
        self.parent_id = parent_id
        self.flags = flags
        self.trace_state = trace_state
        self.attributes = attributes
        self.start_time = time.time_ns()
        self.end_time = 0
        self.error = ""

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    def traceparent(self) -> bytes:
        return b"00-%032x-%016x-%02x" % (self.trace_id, self.span_id, self.flags & 1)

    def set_attribute(self, name: str, value: Any) -> None:
        """Only on a span given attributes of its own (component spans share theirs, and set none)."""
        if self.flags & 1:
            self.attributes[name] = value

    def end(self, error: str = "") -> None:
        if self.flags & 1:
            self.end_time = time.time_ns()
            self.error = error
            self.recorder.exporting.add(self)


class Sink(Protocol):
    """Where batches of ended spans go (an exporter)."""

    def export(self, spans: Sequence[Span]) -> None: ...

    def shutdown(self) -> None: ...


class Exporting:
    """Ended spans, queued and exported by one background thread in batches (at most every ``delay`` s).

    Batches are small (``batch`` spans): encoding one holds the GIL, and a short hold delays the event loop
    less than a long one."""

    def __init__(self, sinks: Sequence[Sink], delay: float = 1.0, batch: int = 128, limit: int = 4096) -> None:
        self.sinks = list(sinks)
        self.delay, self.batch, self.limit = delay, batch, limit
        self._queue: deque[Span] = deque()
        self._wake = threading.Event()
        self._stopped = False
        self._dropped = 0
        self._thread: threading.Thread | None = None  # started with the first span: none until then

    def add(self, span: Span) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="layotto-span-export", daemon=True)
            self._thread.start()
        queue = self._queue
        if len(queue) >= self.limit:
            self._dropped += 1
            return
        queue.append(span)
        if len(queue) >= self.batch:
            self._wake.set()

    def _drain(self) -> None:
        while self._queue:
            spans = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            for sink in self.sinks:
                try:
                    sink.export(spans)
                except Exception as exc:  # an exporter's failure loses its spans, never the sidecar
                    log.warning("exporting %d spans to %s failed: %s", len(spans), type(sink).__name__, exc)
        if self._dropped:
            log.warning("%d spans dropped: the export queue was full", self._dropped)
            self._dropped = 0

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self.delay)
            self._wake.clear()
            self._drain()

    def shutdown(self) -> None:
        """Export what is queued, then stop (blocking: call it off the event loop)."""
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self._drain()
        for sink in self.sinks:
            sink.shutdown()


class SpanRecorder:
    """Starts spans with daprd's sampler: a parent's decision is kept; a root is sampled by its trace id."""

    def __init__(self, rate: float, exporting: Exporting) -> None:
        self.bound = TraceIdRatioBased.get_bound_for_rate(rate)
        self.exporting = exporting

    def start(
        self,
        name: str,
        kind: str,
        attributes: dict[str, Any],
        parent: tuple[int, int, int, str] | None = None,
    ) -> Span:
        """A span under ``parent`` (trace id, span id, flags, tracestate), else under the current span, else a
        new root."""
        if parent is None:
            current = CURRENT.get()
            if current is not None:
                parent = (current.trace_id, current.span_id, current.flags, current.trace_state)
        if parent is not None:
            trace_id, parent_id, flags, state = parent
            flags &= 1
        else:
            trace_id = random.getrandbits(128) or 1
            parent_id, state = 0, ""
            flags = 1 if trace_id & _TRACE_ID_LIMIT < self.bound else 0
        return Span(self, name, kind, trace_id, parent_id, flags, state, attributes)

    @staticmethod
    def make_current(span: Span) -> Token[Span | None]:
        return CURRENT.set(span)

    @staticmethod
    def restore(token: Token[Span | None]) -> None:
        CURRENT.reset(token)
