"""The metrics listener (``--metrics-port``, 9090 by default): Prometheus' text format on every path, as daprd's
handler is mounted at ``/``.

It answers on the sidecar's event loop (the instruments are plain dicts written by the loop: no locks, no
thread), one request per connection. Dapr's ``dapr_*`` families come first, then what ``prometheus_client``
collects about the process (``process_*``, ``python_*``: the counterpart of daprd's ``go_*``/``process_*``).
A port that is taken is a warning, not a failure: metrics are an aid, and on a developer's machine 9090 is
often someone else's (daprd, too, carries on when its metrics server cannot start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

__all__ = ("CONTENT_TYPE", "MetricsServer")

log = logging.getLogger("layotto.metrics")
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_HEAD_LIMIT = 16 << 10
#: The one path that is not the exposition (daprd's handler answers every path with it).
DELIVERIES = b"/layotto/deliveries"
_READ_TIMEOUT = 10.0  # daprd's ReadTimeout


class MetricsServer:
    """Serves ``render()`` (the ``dapr_*`` text) plus the process metrics on ``host:port``."""

    def __init__(
        self, render: Callable[[], str], host: str, port: int, recent: Callable[[], bytes] | None = None
    ) -> None:
        self.render = render
        #: ``/layotto/deliveries``: the last deliveries to the app, as JSON (for ``layotto dashboard``).
        self.recent = recent
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def bound_port(self) -> int | None:
        """The port actually listened on (None when not listening), for ``--metrics-port 0``."""
        if self._server is None:
            return None
        for sock in self._server.sockets:
            if sock is not None:  # uvloop lists a listening handle that already closed as None
                return int(sock.getsockname()[1])
        return None

    def body(self) -> bytes:
        from prometheus_client import REGISTRY, generate_latest  # at the first scrape: start-up stays lean

        return self.render().encode() + generate_latest(REGISTRY)

    async def start(self) -> bool:
        try:
            self._server = await asyncio.start_server(self._answer, self.host, self.port, limit=_HEAD_LIMIT)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            log.warning(
                "metrics server not started on %s:%d: %s; serving without metrics", self.host, self.port, reason
            )
            return False
        bound = self.bound_port
        if bound is None:  # listening, then closed at once (seen rarely on a busy machine): as a port taken
            log.warning(
                "metrics server not started on %s:%d: its socket closed; serving without metrics", self.host, self.port
            )
            await self.close()
            return False
        log.info("metrics server started on %s:%d/", self.host, bound)
        return True

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            method, target = [*head.split(b" ", 2), b"", b""][:2]
            if method not in (b"GET", b"HEAD"):
                status, body = b"405 Method Not Allowed", b"Method Not Allowed\n"
                content_type = b"text/plain; charset=utf-8"
            elif target.partition(b"?")[0] == DELIVERIES and self.recent is not None:
                status, body, content_type = b"200 OK", self.recent(), b"application/json"
            else:
                status, body, content_type = b"200 OK", self.body(), CONTENT_TYPE
            writer.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-type: " + content_type
                + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
                + (body if method != b"HEAD" else b"")
            )  # fmt: skip
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
