"""Load generation: open-loop at a fixed rate (latency) and closed-loop as fast as possible (throughput).

The same generator drives an HTTP/1.1 server over N keep-alive connections (``HttpTarget``) and any async
callable (``CallTarget``, e.g. a redis-py call), so a baseline and a sidecar run are measured identically:
same schedule, same N concurrent slots, same clock, same statistics.

Open loop, and how it avoids coordinated omission
-------------------------------------------------
Request ``i`` of a run is *scheduled* at ``t0 + i / rate``, decided before the run starts and independent of
how fast the server answers. Its latency is ``completion time - scheduled time``, never ``completion - send``.

* A timer (a Linux ``timerfd`` on ``CLOCK_MONOTONIC`` registered with the event loop, so it wakes the loop
  with microsecond precision rather than the loop's millisecond timers; ``loop.call_at`` elsewhere) ticks at
  the request interval. Every tick queues each request whose scheduled time has passed, all of them if the
  loop woke late, so the offered load stays at ``rate`` whatever the server does.
* N workers, each owning one connection, take requests from that queue in order. When all N are busy, the
  queue grows and each waiting request's wait is part of its latency, because the clock started at its
  scheduled time. A server that stalls for 100 ms therefore shows ~100 requests with latencies from 100 ms
  down to ~0, as a real fixed-rate client population would see, instead of one slow sample followed by
  a pause in sending (the "coordinated omission" of closed-loop tools such as ``ab``, and of ``hey -q``,
  whose rate-limited workers still wait for each answer before sending; ``wrk2`` takes this approach).
* The generator's own lateness (timer wake-up, event-loop turn) is also inside the latency; it is reported
  separately as ``start_delay`` (``send time - scheduled time``), so a run where the client, not the server,
  is the bottleneck can be seen. Baseline and sidecar runs carry the same client overhead, so it largely cancels in
  the *added* latency (``sidecar percentile - baseline percentile``).
* Requests still unanswered ``drain_timeout`` seconds after the last one was scheduled are counted as errors
  (``timeout``); non-2xx answers are errors too (their latencies are still recorded).

Closed loop
-----------
N workers send back-to-back for ``duration`` seconds; ``achieved_rate`` is the server's capacity at N
concurrent requests, and latency there is service time only (closed loops coordinate with the server by
design, which is why they are used for throughput only). ``client_cpu`` (this process's CPU seconds per
second) tells whether the generator itself was the limit.

HTTP: raw asyncio transports and protocols (the layer under asyncio streams; uvloop when installed) with
httptools' response parser; request bytes are prepared up front; Nagle is off. One request in flight per
connection (no pipelining), as Dapr's fortio and k6 runs do.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import math
import os
import socket
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import httptools

__all__ = (
    "CallTarget",
    "HttpSequenceTarget",
    "HttpTarget",
    "Result",
    "Target",
    "closed_loop",
    "http_request",
    "open_loop",
)

RequestBytes = bytes | Callable[[int, int], bytes]  # fixed bytes, or (index, scheduled ns) -> bytes
Call = Callable[[int, int], Awaitable[Any]]  # (index, scheduled ns) -> awaitable; raising = error

_NS = 1_000_000_000
_MIN_TICK_NS = 50_000  # above 20k rps a tick releases several requests at once


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """The raw bytes of one HTTP/1.1 keep-alive request."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --- targets --------------------------------------------------------------------------------------------------


class Slot(Protocol):
    """One concurrent lane of a target: an HTTP connection, or a slot of an async callable."""

    async def send(self, index: int, scheduled_ns: int) -> int:
        """Performs request ``index``; returns its status (2xx = success). Raises on transport errors."""
        ...

    def close(self) -> None: ...


class Target(Protocol):
    name: str

    async def open_slot(self, worker: int) -> Slot: ...


class _HttpConnection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[int] | None = None
        self.open = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass asyncio's
        self.open = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            if self._transport is not None:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    # httptools callback
    def on_message_complete(self) -> None:
        if not self._parser.should_keep_alive():
            self.open = False
            if self._transport is not None:
                self._transport.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self._parser.get_status_code())

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    async def request(self, data: bytes) -> int:
        assert self._transport is not None
        waiter: asyncio.Future[int] = self._loop.create_future()
        self._waiter = waiter
        self._transport.write(data)
        return await waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _HttpSlot:
    """One connection; an operation is one request, or several in order (e.g. lock then unlock)."""

    def __init__(self, host: str, port: int, requests: Sequence[RequestBytes]) -> None:
        self._host, self._port, self._requests = host, port, requests
        self._connection: _HttpConnection | None = None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, self._connection = await loop.create_connection(lambda: _HttpConnection(loop), self._host, self._port)

    async def send(self, index: int, scheduled_ns: int) -> int:
        status = 0
        for request in self._requests:
            if self._connection is None or not self._connection.open:
                await self.connect()  # the server closed it: reconnecting is part of this request's latency
            assert self._connection is not None
            data = request if isinstance(request, bytes) else request(index, scheduled_ns)
            status = await self._connection.request(data)
            if not 200 <= status < 300:
                break
        return status

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


@dataclass
class HttpTarget:
    """An HTTP/1.1 server: ``request`` is the raw request (or a function of index and scheduled time)."""

    name: str
    port: int
    request: RequestBytes
    host: str = "127.0.0.1"

    async def open_slot(self, worker: int) -> Slot:
        slot = _HttpSlot(self.host, self.port, (self.request,))
        await slot.connect()
        return slot


@dataclass
class HttpSequenceTarget:
    """One operation = these requests in order on one connection; ``requests(worker)`` gives each worker its own."""

    name: str
    port: int
    requests: Callable[[int], Sequence[RequestBytes]]
    host: str = "127.0.0.1"

    async def open_slot(self, worker: int) -> Slot:
        slot = _HttpSlot(self.host, self.port, self.requests(worker))
        await slot.connect()
        return slot


class _CallSlot:
    def __init__(self, call: Call) -> None:
        self._call = call

    async def send(self, index: int, scheduled_ns: int) -> int:
        await self._call(index, scheduled_ns)
        return 200

    def close(self) -> None:
        pass


@dataclass
class CallTarget:
    """An async callable (a direct client call); N workers call it concurrently, like N connections."""

    name: str
    call: Call

    async def open_slot(self, worker: int) -> Slot:
        return _CallSlot(self.call)


# --- results --------------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of ascending values (``p`` in 0..100); 0 when empty."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Result:
    target: str
    mode: str  # "open" | "closed"
    connections: int
    requested_rate: float | None
    duration: float  # seconds of scheduled (open) or sending (closed) time
    scheduled: int
    completed: int  # answered, any status
    errors: dict[str, int]  # kind -> count: "HTTP 500", "timeout", "ConnectionResetError", ...
    elapsed: float  # t0 -> last completion
    client_cpu: float  # this process's CPU seconds per wall second during the run
    latencies_ns: list[int] = field(repr=False)  # sorted, of every answered request
    start_delays_ns: list[int] = field(repr=False)  # sorted, send - scheduled (open loop only)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def achieved_rate(self) -> float:
        ok = self.completed - sum(v for k, v in self.errors.items() if k.startswith("HTTP "))
        return ok / self.elapsed if self.elapsed > 0 else 0.0

    def latency_ms(self, p: float) -> float:
        return percentile(self.latencies_ns, p) / 1e6

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ns
        return {
            "target": self.target,
            "mode": self.mode,
            "connections": self.connections,
            "requested_rate": self.requested_rate,
            "duration_s": round(self.duration, 3),
            "scheduled": self.scheduled,
            "completed": self.completed,
            "errors": self.error_count,
            "error_kinds": dict(self.errors),
            "achieved_rate": round(self.achieved_rate, 1),
            "client_cpu_cores": round(self.client_cpu, 3),
            "latency_ms": {
                "p50": self.latency_ms(50),
                "p90": self.latency_ms(90),
                "p99": self.latency_ms(99),
                "max": (lat[-1] / 1e6) if lat else 0.0,
                "mean": (sum(lat) / len(lat) / 1e6) if lat else 0.0,
            },
            "start_delay_ms": {
                "p50": percentile(self.start_delays_ns, 50) / 1e6,
                "p99": percentile(self.start_delays_ns, 99) / 1e6,
            },
        }


# --- the clock ------------------------------------------------------------------------------------------------


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Ticker:
    """Calls ``on_tick`` every ``period_ns`` from ``start_ns`` (CLOCK_MONOTONIC = ``time.monotonic_ns``).

    On Linux a timerfd wakes the event loop at the exact time; elsewhere ``loop.call_at`` (1 ms steps).
    """

    _CLOCK_MONOTONIC = 1
    _TFD_NONBLOCK_CLOEXEC = os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    _TFD_TIMER_ABSTIME = 1

    def __init__(self, start_ns: int, period_ns: int, on_tick: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._start_ns, self._period_ns, self._on_tick = start_ns, period_ns, on_tick
        self._fd = -1
        self._handle: asyncio.TimerHandle | None = None
        libc = self._libc()
        if libc is not None:
            fd = libc.timerfd_create(self._CLOCK_MONOTONIC, self._TFD_NONBLOCK_CLOEXEC)
            if fd >= 0:
                spec = _Itimerspec(
                    _Timespec(period_ns // _NS, period_ns % _NS), _Timespec(start_ns // _NS, start_ns % _NS)
                )
                if libc.timerfd_settime(fd, self._TFD_TIMER_ABSTIME, ctypes.byref(spec), None) == 0:
                    self._fd = fd
                    self._loop.add_reader(fd, self._read)
                    return
                os.close(fd)
        self._next = -1
        self._schedule()

    @staticmethod
    def _libc() -> Any:
        if not sys.platform.startswith("linux"):
            return None
        try:
            return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            return None

    def _read(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
            self._on_tick()

    def _schedule(self) -> None:
        self._next += 1
        due_ns = self._start_ns + self._next * self._period_ns
        delay = (due_ns - time.monotonic_ns()) / _NS
        self._handle = self._loop.call_at(self._loop.time() + max(delay, 0.0), self._fallback_tick)

    def _fallback_tick(self) -> None:
        self._on_tick()
        self._schedule()

    def stop(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        if self._handle is not None:
            self._handle.cancel()


# --- runs -----------------------------------------------------------------------------------------------------


async def _open_slots(target: Target, connections: int) -> list[Slot]:
    return list(await asyncio.gather(*(target.open_slot(worker) for worker in range(connections))))


def _error_kind(exc: BaseException) -> str:
    return type(exc).__name__


async def open_loop(
    target: Target,
    rate: float,
    duration: float,
    connections: int = 16,
    drain_timeout: float = 5.0,
    progress: Callable[[int, int], None] | None = None,
) -> Result:
    """``rate * duration`` requests at fixed times; latency measured from each request's scheduled time."""
    total = max(1, round(rate * duration))
    period = max(1, round(_NS / rate))  # integer ns, so timer ticks and scheduled times coincide exactly
    slots = await _open_slots(target, connections)
    latencies = array("q", [-1]) * total
    delays = array("q", [0]) * total
    errors: dict[str, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    released = 0
    last_done = 0
    done = asyncio.Event()
    completed = 0

    async def worker(slot: Slot) -> None:
        nonlocal last_done, completed
        while True:
            index = await queue.get()
            if index < 0:
                return
            scheduled = t0 + index * period
            delays[index] = time.monotonic_ns() - scheduled
            try:
                status = await slot.send(index, scheduled)
            except Exception as exc:
                kind = _error_kind(exc)
                errors[kind] = errors.get(kind, 0) + 1
                continue
            now = time.monotonic_ns()
            latencies[index] = now - scheduled
            last_done = max(last_done, now)
            completed += 1
            if not 200 <= status < 300:
                kind = f"HTTP {status}"
                errors[kind] = errors.get(kind, 0) + 1

    def release() -> None:
        nonlocal released
        now = time.monotonic_ns()
        due = min(total, (now - t0) // period + 1) if now >= t0 else 0
        while released < due:
            queue.put_nowait(released)
            released += 1
        if released >= total:
            done.set()

    cpu0 = time.process_time()
    t0 = time.monotonic_ns() + 20_000_000  # 20 ms to set up the timer and let workers wait
    workers = [asyncio.create_task(worker(slot)) for slot in slots]
    ticker = _Ticker(t0, max(period, _MIN_TICK_NS), release)
    reporter = asyncio.create_task(_report(progress, lambda: completed, total)) if progress else None
    try:
        await done.wait()
        ticker.stop()
        for _ in workers:
            queue.put_nowait(-1)
        _, pending = await asyncio.wait(workers, timeout=drain_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        ticker.stop()
        if reporter is not None:
            reporter.cancel()
        for task in workers:
            task.cancel()
        for slot in slots:
            slot.close()
    end = time.monotonic_ns()
    cpu = time.process_time() - cpu0
    lost = total - completed - sum(v for k, v in errors.items() if not k.startswith("HTTP "))
    if lost > 0:
        errors["timeout"] = errors.get("timeout", 0) + lost
    answered = sorted(v for v in latencies if v >= 0)
    elapsed = max(last_done - t0, int(duration * _NS)) / _NS if completed else duration
    return Result(
        target=target.name,
        mode="open",
        connections=connections,
        requested_rate=rate,
        duration=duration,
        scheduled=total,
        completed=completed,
        errors=errors,
        elapsed=elapsed,
        client_cpu=cpu / max((end - t0) / _NS, 1e-9),
        latencies_ns=answered,
        start_delays_ns=sorted(delays[i] for i in range(total) if latencies[i] >= 0),
    )


async def closed_loop(
    target: Target,
    duration: float,
    connections: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> Result:
    """N workers send back-to-back for ``duration`` seconds: the server's throughput at N in flight."""
    slots = await _open_slots(target, connections)
    latencies: list[int] = []
    errors: dict[str, int] = {}
    t0 = time.monotonic_ns()
    end_at = t0 + int(duration * _NS)
    counter = 0

    async def worker(slot: Slot) -> None:
        nonlocal counter
        while True:
            start = time.monotonic_ns()
            if start >= end_at:
                return
            index = counter
            counter += 1
            try:
                status = await slot.send(index, start)
            except Exception as exc:
                kind = _error_kind(exc)
                errors[kind] = errors.get(kind, 0) + 1
                continue
            latencies.append(time.monotonic_ns() - start)
            if not 200 <= status < 300:
                kind = f"HTTP {status}"
                errors[kind] = errors.get(kind, 0) + 1

    cpu0 = time.process_time()
    reporter = asyncio.create_task(_report(progress, lambda: len(latencies), 0)) if progress else None
    try:
        await asyncio.gather(*(worker(slot) for slot in slots))
    finally:
        if reporter is not None:
            reporter.cancel()
        for slot in slots:
            slot.close()
    elapsed = (time.monotonic_ns() - t0) / _NS
    return Result(
        target=target.name,
        mode="closed",
        connections=connections,
        requested_rate=None,
        duration=duration,
        scheduled=counter,
        completed=len(latencies),
        errors=errors,
        elapsed=elapsed,
        client_cpu=(time.process_time() - cpu0) / elapsed,
        latencies_ns=sorted(latencies),
        start_delays_ns=[],
    )


async def _report(progress: Callable[[int, int], None] | None, done: Callable[[], int], total: int) -> None:
    assert progress is not None
    while True:
        await asyncio.sleep(5.0)
        progress(done(), total)
