"""A raw gRPC client for the load generator: unary calls over one HTTP/2 connection, written on an asyncio
Protocol, so the gRPC runs measure the server and not grpcio's client (a ``grpc.aio`` channel costs the load
generator ~0.33 CPU s per 1000 state gets, against 0.13 for the raw HTTP/1.1 client, on the same 2 cores as
the server).

Every call sends the same bytes but for its stream id: one HEADERS frame whose HPACK block uses only the
static table and literals without indexing (so it never touches the dynamic table and is encoded once), and
one DATA frame with the length-prefixed message and END_STREAM. Answers are not HPACK-decoded: a unary call
that succeeded has sent its message (a DATA frame) before the trailers, while an error is a Trailers-Only
answer (HEADERS with END_STREAM and no DATA); a stream reset or GOAWAY fails the call. The connection
advertises 16 MiB stream windows, returns connection window as it is consumed, and answers SETTINGS and PING.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import cast

__all__ = ("GrpcCallError", "GrpcTarget")

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_WINDOW = 1 << 24  # our stream windows
_REFILL = 1 << 20  # connection window returned every MiB received


class GrpcCallError(Exception):
    """The call did not end with a message: an error status, a reset stream or a closed connection."""


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload


def _integer(value: int, prefix: int, first: int = 0) -> bytes:
    """An HPACK integer with a ``prefix``-bit prefix; ``first`` carries the pattern bits above it."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _literal(name_index: int, value: bytes) -> bytes:
    """Literal without indexing, the name from the static table, the value not Huffman-coded."""
    return _integer(name_index, 4) + _integer(len(value), 7) + value


def header_block(authority: str, path: str) -> bytes:
    """The request's HPACK block (RFC 7541: static table only, no dynamic-table entries)."""
    te = b"\x00" + _integer(2, 7) + b"te" + _integer(8, 7) + b"trailers"
    return (
        b"\x83\x86"  # :method POST, :scheme http (static indices 3 and 6)
        + _literal(4, path.encode())  # :path
        + _literal(1, authority.encode())  # :authority
        + _literal(31, b"application/grpc")  # content-type
        + te
    )


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection; each call is a stream, any number in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._next_stream = 1
        self._calls: dict[int, asyncio.Future[int]] = {}
        self._answered: dict[int, int] = {}  # stream -> message bytes received so far
        self._unreturned = 0
        self.closed: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass asyncio's
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        settings = struct.pack(">HI", 0x2, 0) + struct.pack(">HI", 0x4, _WINDOW)  # no push; stream window
        refill = _frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", _WINDOW - 65535))
        self._transport.write(_PREFACE + _frame(_SETTINGS, 0, 0, settings) + refill)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(exc or ConnectionResetError("connection closed by the server"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 9:
            length = int.from_bytes(buffer[start : start + 3], "big")
            end = start + 9 + length
            if len(buffer) < end:
                break
            kind, flags = buffer[start + 3], buffer[start + 4]
            stream = int.from_bytes(buffer[start + 5 : start + 9], "big") & 0x7FFFFFFF
            self._frame(kind, flags, stream, bytes(buffer[start + 9 : end]) if kind != _DATA else b"", length)
            start = end
        del buffer[:start]

    def _frame(self, kind: int, flags: int, stream: int, payload: bytes, length: int) -> None:
        if kind == _DATA:
            if stream in self._answered:
                self._answered[stream] += length
            self._unreturned += length
            if self._unreturned >= _REFILL and self._transport is not None:
                self._transport.write(_frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", self._unreturned)))
                self._unreturned = 0
            if flags & _END_STREAM:
                self._end(stream)
        elif kind == _HEADERS:
            if flags & _END_STREAM:
                self._end(stream)
        elif kind == _SETTINGS:
            if not flags & _ACK and self._transport is not None:
                self._transport.write(_frame(_SETTINGS, _ACK, 0))
        elif kind == _PING:
            if not flags & _ACK and self._transport is not None:
                self._transport.write(_frame(_PING, _ACK, 0, payload))
        elif kind == _RST_STREAM:
            self._fail(stream, GrpcCallError(f"stream reset (error {int.from_bytes(payload[:4], 'big')})"))
        elif kind == _GOAWAY:
            self._fail_all(GrpcCallError("GOAWAY from the server"))
            if self._transport is not None:
                self._transport.close()

    def _end(self, stream: int) -> None:
        call = self._calls.pop(stream, None)
        received = self._answered.pop(stream, 0)
        if call is not None and not call.done():
            if received:
                call.set_result(received - 5)  # the message's length, without its 5-byte prefix
            else:
                call.set_exception(GrpcCallError("answered with an error status (no message)"))

    def _fail(self, stream: int, exc: BaseException) -> None:
        call = self._calls.pop(stream, None)
        self._answered.pop(stream, None)
        if call is not None and not call.done():
            call.set_exception(exc)

    def _fail_all(self, exc: BaseException) -> None:
        self.closed = self.closed or exc
        for stream in list(self._calls):
            self._fail(stream, exc)

    def call(self, headers: bytes, message: bytes) -> asyncio.Future[int]:
        """Starts one unary call; its future resolves to the reply message's length."""
        future: asyncio.Future[int] = self._loop.create_future()
        if self.closed is not None or self._transport is None:
            future.set_exception(GrpcCallError(f"connection closed: {self.closed}"))
            return future
        stream = self._next_stream
        self._next_stream += 2
        self._calls[stream] = future
        self._answered[stream] = 0
        sid = struct.pack(">I", stream)
        self._transport.write(headers[:5] + sid + headers[9:] + message[:5] + sid + message[9:])
        return future

    def close(self) -> None:
        self.closed = self.closed or ConnectionResetError("closed by the client")
        if self._transport is not None:
            self._transport.close()


class _Slot:
    def __init__(self, target: GrpcTarget, connection: _Connection) -> None:
        self._target, self._connection = target, connection

    async def send(self, index: int, scheduled_ns: int) -> int:
        target = self._target
        length = await self._connection.call(target.headers_frame, target.data_frame)
        if length < target.min_reply:
            raise GrpcCallError(f"reply of {length} bytes, expected at least {target.min_reply}")
        return 200

    def close(self) -> None:
        self._connection.close()
        self._target.forget(self._connection)


@dataclass
class GrpcTarget:
    """Unary calls of ``method`` (``/package.Service/Method``) with the serialized ``message``, over one
    connection shared by every worker (as an SDK shares one channel); ``min_reply``: the least reply size
    that counts as an answer (a state get that found nothing is an empty message)."""

    name: str
    port: int
    method: str
    message: bytes
    min_reply: int = 0
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        block = header_block(f"{self.host}:{self.port}", self.method)
        self.headers_frame = _frame(_HEADERS, _END_HEADERS, 0, block)
        body = b"\x00" + struct.pack(">I", len(self.message)) + self.message
        self.data_frame = _frame(_DATA, _END_STREAM, 0, body)
        self._connection: _Connection | None = None
        self._lock = asyncio.Lock()

    async def open_slot(self, worker: int) -> _Slot:
        async with self._lock:  # the workers' slots are opened at once: the first one connects
            connection = self._connection
            if connection is None or connection.closed is not None:
                loop = asyncio.get_running_loop()
                _, connection = await loop.create_connection(lambda: _Connection(loop), self.host, self.port)
                self._connection = connection
        return _Slot(self, connection)

    def forget(self, connection: _Connection) -> None:
        if self._connection is connection:
            self._connection = None
