"""Spans recorded lean, exported in the background by OpenTelemetry's exporters (or Zipkin's JSON, directly).

OpenTelemetry's SDK ``Span`` does much per span that a sidecar never uses (locks, limits, attribute
validation, events, self-metrics), and its exporters encode slowly: here a traced state get spent more time
in span bookkeeping and encoding than in the get. So a span is a small record (``Span``), sampled as the
SDK's ``ParentBased(TraceIdRatioBased(rate))`` samples, queued when it ends, and exported in batches by a
task on the event loop (``Exporting``): Zipkin as its JSON v2 written with orjson (``app.observability.zipkin``),
OTLP and stdout through the SDK's exporters (given SDK ``ReadableSpan``s) in a worker thread. Nothing is recorded for an
unsampled span; its ids still propagate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
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

    async def export(self, spans: Sequence[Span]) -> None: ...

    async def shutdown(self) -> None: ...


class Exporting:
    """Ended spans, queued and exported in batches by one task on the event loop (at most every ``delay`` s).

    On the loop, not in a thread: a thread that encodes and sends wants the GIL back after every system call,
    and each hand-over can hold the event loop for up to the interpreter's switch interval; measured, that
    moved a traced state get's p90 by milliseconds. Zipkin's JSON is encoded and sent here between requests,
    in few large batches (``batch`` spans, or whatever ``delay`` gathered): each holds the loop for a moment,
    and few such moments touch few requests. The SDK's blocking exporters run in a worker thread."""

    def __init__(self, sinks: Sequence[Sink], delay: float = 1.0, batch: int = 512, limit: int = 8192) -> None:
        self.sinks = list(sinks)
        self.delay, self.batch, self.limit = delay, batch, limit
        self._queue: deque[Span] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None  # started with the first span: none until then
        self._dropped = 0

    def add(self, span: Span) -> None:
        """Queue an ended span (on the event loop)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(self._wake))
        queue = self._queue
        if len(queue) >= self.limit:
            self._dropped += 1
            return
        queue.append(span)
        if len(queue) >= self.batch and self._wake is not None:
            self._wake.set()

    async def _drain(self) -> None:
        while self._queue:
            spans = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            for sink in self.sinks:
                try:
                    await sink.export(spans)
                except Exception as exc:  # an exporter's failure loses its spans, never the sidecar
                    log.warning("exporting %d spans to %s failed: %s", len(spans), type(sink).__name__, exc)
        if self._dropped:
            log.warning("%d spans dropped: the export queue was full", self._dropped)
            self._dropped = 0

    async def _run(self, wake: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.delay)
            wake.clear()
            await self._drain()

    async def shutdown(self) -> None:
        """Export what is queued, then stop the exporters."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drain()
        for sink in self.sinks:
            await sink.shutdown()


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
