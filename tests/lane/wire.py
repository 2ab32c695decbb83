"""Raw HTTP/1.1 over a socket for the lane's framing tests: bytes out as the test frames them, answers parsed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import httptools
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.middleware import FrontDoor
from app.settings import Settings

__all__ = ("Answer", "Connection", "connect", "exchange", "request", "served")


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        return next((value for header, value in self.headers if header == name), None)

    def wire(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """What both lanes must agree on: everything but the ``date`` header."""
        return self.status, [h for h in self.headers if h[0] != b"date"], self.body


class _Parser:
    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.parser = httptools.HttpResponseParser(self)
        self._current: Answer | None = None

    def on_message_begin(self) -> None:
        self._current = Answer(0)

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._current is not None
        self._current.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        assert self._current is not None
        self._current.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        assert self._current is not None
        self._current.body += body

    def on_message_complete(self) -> None:
        assert self._current is not None
        if self._current.status >= 200:  # 100 Continue precedes the answer
            self.answers.append(self._current)
        self._current = None


class Connection:
    """One client connection: ``send`` raw bytes, ``answers(n)`` waits (with a generous bound) for n answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._parsed = _Parser()
        self.raw = b""
        self.closed = False

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answers(self, count: int, timeout: float = 30.0) -> list[Answer]:
        async with asyncio.timeout(timeout):
            while len(self._parsed.answers) < count and not self.closed:
                await self._read()
        return self._parsed.answers[:count]

    async def until_closed(self, timeout: float = 30.0) -> list[Answer]:
        async with asyncio.timeout(timeout):
            while not self.closed:
                await self._read()
        return self._parsed.answers

    async def _read(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            self.closed = True
            return
        self.raw += data
        self._parsed.parser.feed_data(data)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def connect(port: int) -> AsyncIterator[Connection]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = Connection(reader, writer)
    try:
        yield connection
    finally:
        await connection.close()


async def exchange(port: int, data: bytes, count: int = 1) -> list[Answer]:
    """``data`` sent on a new connection, and its first ``count`` answers."""
    async with connect(port) as connection:
        await connection.send(data)
        return await connection.answers(count)


@contextlib.asynccontextmanager
async def served(
    app: FrontDoor | ASGIApp,
    settings: Settings | None = None,
    http: type[HttpToolsProtocol] | None = None,
    keep_alive: int = 5,
) -> AsyncIterator[int]:
    """``app`` behind uvicorn on a free loopback port, with the protocol ``settings.http_lane`` names for the
    API port (or ``http``), closing connections idle for ``keep_alive`` seconds."""
    from app.http_server import api_protocol

    if http is None:
        assert isinstance(app, FrontDoor) and settings is not None
        http = api_protocol(settings, app)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=http, lifespan="off", log_config=None, timeout_keep_alive=keep_alive
    )
    config.server_header = False
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        await task


def request(method: str, target: str, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """One request, framed with ``Content-Length`` unless ``headers`` frame it."""
    lines = [f"{method} {target} HTTP/1.1", "host: sidecar", *(f"{name}: {value}" for name, value in headers)]
    framed = any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers)
    if not framed and (body or method in ("POST", "PUT")):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
