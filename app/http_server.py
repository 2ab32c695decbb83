"""uvicorn's httptools protocol with a bound on request heads, as daprd's ``--read-buffer-size``.

uvicorn has no limit on the request line and headers with httptools, and httptools concatenates a header
value piece by piece until it is complete: a 48 MiB header took seconds of the event loop before anything
could refuse it. Here the bytes of a head that is still incomplete are counted after each read; past the
limit the connection gets Go's ``431 Request Header Fields Too Large`` and is closed at once, so at most one
socket read (uvloop reads up to 256 KiB) beyond the limit is ever buffered.

The limit is daprd's: ``--read-buffer-size`` (4 KiB by default) plus the 4 KiB of slack Go's ``net/http``
allows on top of ``MaxHeaderBytes``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from app.invocation.hop_server import HopApp
    from app.middleware import FrontDoor
    from app.settings import Settings

__all__ = ("GO_HEADER_SLACK", "api_protocol", "bounded_protocol", "hop_protocol")

GO_HEADER_SLACK = 4096
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 35\r\n\r\n"
    b"431 Request Header Fields Too Large"
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """Counts the bytes of the request head being read; ``head_limit`` is set by ``bounded_protocol``."""

    head_limit = 4096 + GO_HEADER_SLACK
    _head_bytes = 0  # bytes of earlier reads that belong to the head being read
    _read_size = 0  # bytes of the read being parsed
    _refused = False

    def data_received(self, data: bytes) -> None:
        self._read_size = len(data)
        super().data_received(data)
        scope = self.scope
        if scope is None or "method" in scope or self.transport.is_closing():
            return  # no request begun, or its head is complete (uvicorn sets the method then)
        # A request began in this read and its head is still incomplete: the read is head bytes (and, for a
        # pipelined request, the end of the previous one, which can only refuse earlier).
        self._head_bytes += len(data)
        if self._head_bytes > self.head_limit:
            self._refuse()

    def _refuse(self) -> None:
        self.logger.info("request head over %d bytes refused (431)", self.head_limit)
        self._refused = True
        self.transport.write(_TOO_LARGE)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # aborting the parse below makes uvicorn want to answer 400 too
            super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        # The head fits in what was read for it; only when that is over the limit is it measured exactly.
        if self._head_bytes + self._read_size > self.head_limit and self._head_size() > self.head_limit:
            self._refuse()
            raise _HeadTooLarge  # stops the parser: no request cycle starts
        self._head_bytes = 0
        self.start_request()

    def start_request(self) -> None:
        """The head is complete and within bounds: hand the request to the ASGI app (``app.lane`` overrides)."""
        super().on_headers_complete()

    # -- the keep-alive timer, armed once per idle spell rather than once per request ----------------------------
    # uvicorn arms a timer when an answer is complete and cancels it when data arrives: 4.2 us per request
    # (uvloop's call_later + cancel) on every connection. Here the end of an answer notes when the connection
    # went idle, data notes it busy, and the one timer, when it fires, closes a connection idle for the whole
    # ``timeout_keep_alive`` or is armed again for the time left (none while busy: the next answer arms it).

    _idle_since: float | None = None

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()  # reads paused for a pipelined request
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = now = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_at(now + self.timeout_keep_alive, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None:
            return
        due = idle_since + self.timeout_keep_alive
        if self.loop.time() >= due:
            self.timeout_keep_alive_handler()
        else:
            self.timeout_keep_alive_task = self.loop.call_at(due, self._keep_alive_due)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def _head_size(self) -> int:
        """The request line and headers as they were on the wire (give or take optional whitespace)."""
        return len(self.url) + 16 + sum(len(name) + len(value) + 4 for name, value in self.headers)


class _HeadTooLarge(Exception):
    pass


def bounded_protocol(read_buffer_size: int) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``Config(http=...)``, refusing heads over ``read_buffer_size``."""
    limit = read_buffer_size + GO_HEADER_SLACK
    return type("BoundedHeadProtocol", (BoundedHeadProtocol,), {"head_limit": limit})


def api_protocol(settings: Settings, door: FrontDoor) -> type[HttpToolsProtocol]:
    """The API port's protocol: the hot routes on ``app.lane`` (the default; ``--http-lane asgi``: none)."""
    if settings.http_lane != "protocol":
        return bounded_protocol(settings.read_buffer_size)
    from app.lane.api import ApiLane
    from app.lane.protocol import lane_protocol

    return lane_protocol(settings.read_buffer_size, ApiLane(door))


def hop_protocol(settings: Settings, app: HopApp) -> type[HttpToolsProtocol]:
    """The internal listener's protocol: hops on ``app.lane`` (the default; ``--http-lane asgi``: none)."""
    if settings.http_lane != "protocol":
        return bounded_protocol(settings.read_buffer_size)
    from app.lane.hop import HopLane
    from app.lane.protocol import lane_protocol

    return lane_protocol(settings.read_buffer_size, HopLane(app))
