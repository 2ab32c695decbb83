"""One request the lane serves: its parts, its body as it arrives, and its answer written straight to the socket.

It stands where uvicorn keeps a ``RequestResponseCycle``: the protocol's keep-alive, pipelining, disconnect
and graceful-shutdown code reads the same attributes (``response_complete``, ``keep_alive``,
``disconnected``, ``message_event.set()``), so both kinds of cycle share one connection. The answer is
framed as uvicorn frames an ASGI answer (its status lines and header checks, the server's ``date``
header first, ``connection: close`` when the connection ends, chunked when no length is given), so the wire
does not tell the lanes apart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE

if TYPE_CHECKING:
    from app.lane.protocol import LaneProtocol

__all__ = ("LaneCycle", "Serve")

log = logging.getLogger("uvicorn.error")  # where uvicorn reports an app's failure, so both lanes log alike

Headers = list[tuple[bytes, bytes]]
Serve = Callable[["LaneCycle"], Awaitable[None]]
_NO_BODY = (204, 304)
#: Per list of a server's default headers (uvicorn makes a new one each second, for its ``date``): the list
#: (kept, so that its id is not reused while remembered), its lines, and what they frame (a
#: ``Content-Length``, chunked or not, ``Connection: close``), checked once. Bounded: two servers per sidecar.
_DEFAULTS: dict[int, tuple[Headers, bytes, int | None, bool | None, bool]] = {}
_DEFAULTS_KEPT = 8
_ERROR_500 = (
    [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"), (b"connection", b"close")],
    b"Internal Server Error",
)


def _closes(value: bytes) -> bool:
    return b"close" in [token.lower().strip() for token in value.split(b",")]


def _defaults(headers: Headers) -> tuple[bytes, int | None, bool | None, bool]:
    """The lines of a server's default headers, checked as ``LaneCycle._head`` checks an answer's, and what
    they frame; once per list (uvicorn's ``date`` changes once a second). Measured, a cycle made and its
    ``respond`` of 4 headers and 1 KiB: 9.1 µs -> 7.4 µs."""
    found = _DEFAULTS.get(id(headers))
    if found is not None and found[0] is headers:
        return found[1:]
    lines: list[bytes] = []
    length: int | None = None
    chunked: bool | None = None
    close = False
    for name, value in headers:
        if HEADER_RE.search(name):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(value):
            raise RuntimeError("Invalid HTTP header value.")
        name = name.lower()
        if name == b"content-length" and chunked is None:
            length = int(value.decode())
            chunked = False
        elif name == b"transfer-encoding" and value.lower() == b"chunked":
            length = 0
            chunked = True
        elif name == b"connection" and _closes(value):
            close = True
        lines += (name, b": ", value, b"\r\n")
    if len(_DEFAULTS) >= _DEFAULTS_KEPT:
        _DEFAULTS.clear()
    _DEFAULTS[id(headers)] = (headers, b"".join(lines), length, chunked, close)
    return b"".join(lines), length, chunked, close


class LaneCycle:
    """A claimed request (``scope`` is uvicorn's, completed by the lane) and its answer."""

    __slots__ = (
        "_chunked",
        "_given",
        "_length",
        "_protocol",
        "chunks",
        "direct",
        "disconnected",
        "eager",
        "keep_alive",
        "message_event",
        "method",
        "more_body",
        "params",
        "response_complete",
        "response_started",
        "scope",
        "sent",
        "serve",
        "started",
        "status",
        "turn",
    )

    def __init__(
        self,
        protocol: LaneProtocol,
        scope: dict[str, Any],
        params: dict[str, str],
        serve: Serve,
        keep_alive: bool,
        eager: bool = False,
    ) -> None:
        self._protocol = protocol
        #: The route reads no body: it runs once its turn comes, whether or not a body follows (as over ASGI,
        #: where a route that never reads the body answers at once).
        self.eager = eager
        self.scope = scope
        self.method: str = scope["method"]
        self.params = params
        self.serve = serve
        #: Serves the request from the protocol's callbacks, without a task, when it can (``app.lane.direct``):
        #: ``False``, and ``serve`` runs in a task.
        self.direct: Callable[[LaneCycle], bool] | None = None
        self.keep_alive = keep_alive
        #: The body as it arrived, joined once when the route reads it (``+=`` per piece would copy a body
        #: sent in small pieces over and over: seconds of CPU for a few MiB in 1 KiB pieces).
        self.chunks: list[bytes] = []
        self.more_body = True
        self.turn = False  # earlier requests on the connection are answered
        self.started = False
        self.response_started = False
        self.response_complete = False
        self.disconnected = False
        self.message_event = self  # uvicorn's protocol wakes a cycle with ``cycle.message_event.set()``
        self.status = 500  # what a request that fails before answering is counted as (as the observed door)
        self.sent = 0  # body bytes the route answered, for the metrics
        self._chunked = False
        self._given = False
        self._length = 0

    def set(self) -> None:
        """uvicorn's wake-up call (connection lost): the relay checks ``disconnected`` between chunks."""

    async def receive(self) -> dict[str, Any]:
        """The ASGI ``receive`` of a ``Request`` the lane builds: the body, whole (the lane claims only bodies
        of a known, bounded length, read before the route runs), then the end of the request."""
        if self._given or self.response_complete or self.disconnected:
            return {"type": "http.disconnect"}
        body, self.chunks = b"".join(self.chunks), []  # one piece: no copy
        self._given = True  # the body is given once; a later call is a disconnect watch
        return {"type": "http.request", "body": body, "more_body": False}

    # -- the answer ---------------------------------------------------------------------------------------------

    def _head(self, status: int, headers: Headers) -> list[bytes]:
        """Status line and headers, as uvicorn's ``RequestResponseCycle.send`` writes them."""
        self.response_started = True
        self.status = status
        encoded, length, chunked, close = _defaults(self._protocol.server_state.default_headers)
        if length is not None:
            self._length = length
        if close:
            self.keep_alive = False
        content = [STATUS_LINE[status], encoded]
        for name, value in headers:
            if HEADER_RE.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if HEADER_VALUE_RE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            name = name.lower()
            if name == b"content-length" and chunked is None:
                self._length = int(value.decode())
                chunked = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self._length = 0
                chunked = True
            elif name == b"connection" and _closes(value):
                self.keep_alive = False
                close = True
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not close:
            content.append(b"connection: close\r\n")
        if chunked is None and self.method != "HEAD" and status not in _NO_BODY:
            chunked = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self._chunked = bool(chunked)
        return content

    def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """A whole answer in one write."""
        if self.disconnected:
            return
        content = self._head(status, headers)
        self.sent += len(body)
        if self.method != "HEAD":
            if self._chunked:
                content += (b"%x\r\n" % len(body), body, b"\r\n") if body else ()
                content.append(b"0\r\n\r\n")
            elif len(body) != self._length:
                raise RuntimeError("Response content length differs from Content-Length")
            else:
                content.append(body)
        self._protocol.transport.write(b"".join(content))
        self._complete()

    def relay(self, status: int, headers: Headers, body: bytes) -> None:
        """``respond`` with ``headers`` and a ``Content-Length`` of ``body`` (none for 204 and 304), for headers
        that need none of ``_head``'s checks: names lower-case and values as httptools' strict parser let them
        through (valid by ``HEADER_RE`` and ``HEADER_VALUE_RE``: ``tests/lane/test_lane_hop_costs.py`` holds
        the parser to it), none of them framing (``Content-Length``, ``Transfer-Encoding``, ``Connection``),
        as ``building_blocks.invocation.headers.response_headers`` leaves a target's answer. The same bytes as
        ``respond``; measured for an invocation's answer of 3 headers and 1 KiB (cycle made, then answered),
        9.1 µs -> 4.5 µs.
        A request that is not answered this way (``HEAD``, a server's default header that frames) is
        ``respond``'s."""
        if self.disconnected:
            return
        encoded, _, chunked, close = _defaults(self._protocol.server_state.default_headers)
        if close or chunked is not None or self.method == "HEAD":
            if status not in _NO_BODY:
                headers.append((b"content-length", b"%d" % len(body)))
            self.respond(status, headers, body)
            return
        self.response_started = True
        self.status = status
        content = [STATUS_LINE[status], encoded]
        for name, value in headers:
            content += (name, b": ", value, b"\r\n")
        if status in _NO_BODY:
            if len(body) != self._length:
                raise RuntimeError("Response content length differs from Content-Length")
        else:
            content += (b"content-length: %d\r\n" % len(body),)
        if not self.keep_alive:
            content.append(b"connection: close\r\n")
        content += (b"\r\n", body)
        self.sent += len(body)
        self._protocol.transport.write(b"".join(content))
        self._complete()

    def start(self, status: int, headers: Headers) -> None:
        """The head of an answer whose body follows (``send``, then ``finish``)."""
        if not self.disconnected:
            self._protocol.transport.write(b"".join(self._head(status, headers)))

    async def send(self, chunk: bytes) -> None:
        """A piece of the body, once the socket takes more (the peer's pace sets ours)."""
        flow = self._protocol.flow
        if flow.write_paused and not self.disconnected:
            await flow.drain()
        if self.disconnected or not chunk:
            return
        self.sent += len(chunk)
        if self.method == "HEAD":
            return
        if self._chunked:
            self._protocol.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            return
        self._length -= len(chunk)
        if self._length < 0:
            raise RuntimeError("Response content longer than Content-Length")
        self._protocol.transport.write(chunk)

    def finish(self) -> None:
        if self.disconnected:
            return
        if self._chunked and self.method != "HEAD":
            self._protocol.transport.write(b"0\r\n\r\n")
        elif self._length and self.method != "HEAD":
            raise RuntimeError("Response content shorter than Content-Length")
        self._complete()

    def _complete(self) -> None:
        self.response_complete = True
        protocol = self._protocol
        if not self.keep_alive:
            protocol.transport.close()
        protocol.on_response_complete()  # the next pipelined request, or the keep-alive timer

    async def run(self) -> None:
        """The route, then the answer; a failure is uvicorn's 500 (or a closed connection once answering)."""
        try:
            await self.serve(self)
        except BaseException as exc:
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        """The route failed: uvicorn's 500, or a closed connection once the answer has started."""
        log.error("Exception in the protocol lane", exc_info=exc)
        if not self.response_started:
            self.respond(500, *_ERROR_500)
        elif not self.response_complete:
            self._protocol.transport.close()

    def spawn(self, serve: Serve) -> None:
        """Serves the rest with ``serve`` in a task (what ``direct`` began and leaves to the general path)."""
        self.serve = serve
        self._protocol.start_task(self)
