"""The connection protocol of the lane: uvicorn's bounded httptools protocol, with the hot routes served below
the ASGI app.

When a request's head is complete (and within ``--read-buffer-size``: ``app.http_server``), the lane is
asked whether it serves the request (``Lane.claim``). A claimed request never becomes ASGI: no
``RequestResponseCycle``, ``asyncio.Event``, ASGI message dicts, front-door wrappers or ``Response.__call__``;
its body (of a known, bounded length) is collected by the parser callbacks, then one task runs the route and
writes the answer to the transport (``app.lane.cycle``). Everything else — and every request while a feature
the lane does not implement is on — is uvicorn's as before, on the same connection: keep-alive, pipelining
(a request waits for the answers before it, whichever lane serves them), ``Expect: 100-continue``,
chunked and large bodies, HTTP/1.0, upgrades, disconnects and graceful shutdown keep uvicorn's code.

Measured on a 2-core machine with 35-43 % of it taken by other work, ``perf/run`` back to back per lane
(ASGI -> protocol, CPU seconds per 1000 requests): state get on Redis at 1000 rps 0.345 -> 0.264 and
0.385 -> 0.332; closed-loop state get 0.191 -> 0.170 and 0.196 -> 0.176 (4,468 -> 4,527 and 4,538 -> 4,822
req/s); invocation per sidecar 0.42 -> 0.38 and 0.41 -> 0.39, where the floor (``perf.floor``) is 0.10-0.11.
What a claimed request still costs is mostly the socket writes, the event loop and the blocks, not this.
"""

from __future__ import annotations

from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.http_server import GO_HEADER_SLACK, BoundedHeadProtocol
from app.lane.cycle import LaneCycle

__all__ = ("Lane", "LaneProtocol", "lane_protocol")


class Lane(Protocol):
    """Decides, from a complete head, whether the lane serves a request (``None``: the ASGI app does)."""

    def claim(
        self, protocol: LaneProtocol, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]
    ) -> LaneCycle | None: ...


class LaneProtocol(BoundedHeadProtocol):
    """``lane`` is set by ``lane_protocol``."""

    lane: Lane

    def start_request(self) -> None:
        parser = self.parser
        if not self.expect_100_continue and parser.get_http_version() == "1.1" and not parser.should_upgrade():
            cycle = self.lane.claim(self, parser.get_method(), self.url, self.headers)
            if cycle is not None:
                self._queue(cycle)
                return
        super().start_request()

    def _queue(self, cycle: LaneCycle) -> None:
        """As uvicorn queues a cycle: served now, or after the answers still owed on this connection."""
        uvicorn: Any = self  # uvicorn types its cycle slots for its own cycle class
        previous = uvicorn.cycle
        uvicorn.cycle = cycle
        if previous is None or previous.response_complete:
            cycle.turn = True
            if cycle.eager:
                self._run(cycle)
        else:
            self.flow.pause_reading()
            uvicorn.pipeline.appendleft((cycle, None))

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if type(cycle) is LaneCycle:  # a pipelined request of the lane: its turn has come
            cycle.turn = True
            if cycle.eager or not cycle.more_body:
                self._run(cycle)
            return
        super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        cycle: Any = self.cycle
        if type(cycle) is LaneCycle:
            if not cycle.eager:  # bounded: the lane claims only bodies of a Content-Length it accepts
                cycle.chunks.append(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        cycle: Any = self.cycle
        if type(cycle) is LaneCycle:
            cycle.more_body = False
            if cycle.turn:
                self._run(cycle)
            return
        super().on_message_complete()

    def _run(self, cycle: LaneCycle) -> None:
        if cycle.started:
            return
        cycle.started = True
        direct = cycle.direct
        if direct is None or not direct(cycle):
            self.start_task(cycle)

    def start_task(self, cycle: LaneCycle) -> None:
        task = self.loop.create_task(cycle.run())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)  # the server's graceful shutdown waits for it


def lane_protocol(read_buffer_size: int, lane: Lane) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``Config(http=...)``: heads bounded by ``read_buffer_size``, the routes
    ``lane`` claims served below the ASGI app."""
    limit = read_buffer_size + GO_HEADER_SLACK
    return type("LaneProtocol", (LaneProtocol,), {"head_limit": limit, "lane": lane})
