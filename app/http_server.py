"""The sidecar's HTTP/1.1 server protocol: uvicorn's httptools protocol, with each response sent in one write.

uvicorn writes a response's head and its body separately, so a small answer leaves as two TCP segments and
the caller's event loop wakes up twice to read it. Here the connection's writes made within one step of the
event loop are joined and leave together at the end of that step (at once past ``FLUSH_AT`` bytes), so a
small answer is one segment: one syscall less for the sidecar, one wake-up less for the caller.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ("FLUSH_AT", "CoalescingTransport", "HttpProtocol")

#: Buffered bytes that are written at once instead of at the end of the step (large or streamed bodies).
FLUSH_AT = 64 * 1024


class CoalescingTransport:
    """Wraps a transport: writes within one event-loop step go out as one ``write`` at its end."""

    __slots__ = ("_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes | bytearray | memoryview] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= FLUSH_AT:
            self.flush()

    def writelines(self, lines: list[bytes | bytearray | memoryview]) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        pending = self._pending
        if pending:
            self._pending = []
            self._size = 0
            if not self._transport.is_closing():
                self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._size = 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a ``CoalescingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, CoalescingTransport(transport, self.loop)))
