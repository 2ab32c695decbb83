"""The sidecar's server protocol: a response leaves in one write; big and late writes are not held back."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from app.http_server import FLUSH_AT, CoalescingTransport, HttpProtocol
from tests.subscriber_app import free_port


class RecordingTransport:
    """Records the writes that reach the socket's transport."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_writes_of_one_step_leave_together_at_its_end() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"")
    transport.write(b"body")
    assert inner.writes == [] and transport.get_write_buffer_size() == 23
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert inner.writes[1:] == [b"next"]
    assert transport.get_extra_info("peername") == "info:peername"


async def test_big_writes_and_close_flush_at_once_and_abort_drops() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"head")
    transport.write(b"x" * FLUSH_AT)
    assert inner.writes == [b"head" + b"x" * FLUSH_AT]
    transport.write(b"last")
    transport.close()
    assert inner.writes[1:] == [b"last"] and inner.closed
    await asyncio.sleep(0)
    assert len(inner.writes) == 2

    dropped = RecordingTransport()
    transport = CoalescingTransport(dropped, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"never sent")
    transport.abort()
    await asyncio.sleep(0)
    assert dropped.writes == [] and dropped.aborted


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"two"):
            await asyncio.sleep(0.05)
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b"x" * 1024
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"1024")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(_app, port=port, http=HttpProtocol, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


def _exchange(port: int, request: bytes) -> list[bytes]:
    """What each ``recv`` returns until the response is complete (or the server is quiet for 0.5 s)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(0.5)
        sock.sendall(request)
        reads = []
        with contextlib.suppress(TimeoutError):
            while data := sock.recv(65536):
                reads.append(data)
                if data.endswith((b"x" * 16, b"0\r\n\r\n")):
                    break
        return reads


@pytest.mark.parametrize("run", range(3))
async def test_a_response_arrives_whole_in_the_first_read(run: int) -> None:
    async with serving() as port:
        reads = await asyncio.to_thread(_exchange, port, b"GET /small HTTP/1.1\r\nhost: x\r\n\r\n")
    assert len(reads) == 1
    head, _, body = reads[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 1024" in head and body == b"x" * 1024


async def test_a_streamed_response_is_not_held_back() -> None:
    async with serving() as port:
        reads = await asyncio.to_thread(_exchange, port, b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
    assert len(reads) >= 3  # head, then each part as it is produced
    assert reads[0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert b"".join(reads[1:]) == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
