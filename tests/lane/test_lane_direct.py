"""Invocations the protocol lane makes from its callbacks (``app.lane.direct``): taken once a pooled connection
to the target is idle, answered byte for byte as the general path answers, and ending as the general path
ends when the shortcut cannot finish (a connection that breaks, an answer that streams, a large error)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.lane.direct import DirectCall
from tests.api.test_invoke_api import resources
from tests.lane.wire import Answer, connect, request
from tests.sidecar import Sidecar, running_sidecar

_BIG = 200_000  # over the block's small-body size: the answer streams, or an error is read whole


class RawApp:
    """An app on a bare socket, so a test controls what a connection does: ``/ok``, ``/drop`` (the connection
    closes with no answer), ``/drop-once`` (that, the first time), ``/big`` (a large chunked answer),
    ``/big-error`` (a large 500 with a length). ``seen`` lists the paths in the order requests arrived."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._dropped: set[str] = set()
        self.connections: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections[writer] = task
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                length = next((int(line[15:]) for line in lines if line.lower().startswith("content-length:")), 0)
                await reader.readexactly(length)
                self.seen.append(path)
                if path == "/drop" or (path == "/drop-once" and path not in self._dropped):
                    self._dropped.add(path)
                    writer.transport.abort()
                    return
                writer.write(_answer(path))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _answer(path: str) -> bytes:
    if path == "/dapr/subscribe":
        return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n[]"
    if path == "/big":
        chunk = b"b" * 10_000
        return (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            + (b"2710\r\n" + chunk + b"\r\n") * 20
            + b"0\r\n\r\n"
        )
    if path == "/bad-header":  # a control character in a value: the sidecar's parser refuses the answer
        return b"HTTP/1.1 200 OK\r\nx-bad: a\x01b\r\ncontent-length: 2\r\n\r\nok"
    if path == "/big-error":
        return b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: %d\r\nx-app: 1\r\n\r\n%b" % (_BIG, b"e" * _BIG)
    return b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-app: 1\r\ncontent-length: 2\r\n\r\nok"


@contextlib.asynccontextmanager
async def _raw_app() -> AsyncIterator[tuple[RawApp, int]]:
    app = RawApp()
    server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    try:
        yield app, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in app.connections:
            writer.transport.abort()
        await asyncio.gather(*app.connections.values(), return_exceptions=True)


@contextlib.asynccontextmanager
async def _sidecar(folder: Path, app_port: int) -> AsyncIterator[Sidecar]:
    async with running_sidecar(_resources(folder), app_id="myapp", app_port=app_port, lane="protocol") as sidecar:
        yield sidecar


def _resources(folder: Path) -> Path:
    folder.mkdir()
    return resources(folder)


def _port(sidecar: Sidecar) -> int:
    port: int = sidecar.client._transport.port  # type: ignore[attr-defined]
    return port


@pytest.fixture
def directs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The methods answered by a direct call."""
    answered: list[str] = []
    original = DirectCall.answered

    def spy(self: DirectCall, response: object) -> None:
        answered.append(self.plan.method)
        original(self, response)  # type: ignore[arg-type]

    monkeypatch.setattr(DirectCall, "answered", spy)
    return answered


async def _settled(sidecar: Sidecar) -> None:
    """Until start-up's call for the subscriptions is answered and its connection is back in the app channel's
    pool (it runs in the background once the sidecar is ready: on a busy machine, after the first call)."""
    channel: Any = sidecar.runtime.app_channel
    async with asyncio.timeout(60):
        while not any(channel._http._idle.values()):
            await asyncio.sleep(0.01)


async def _answers(sidecar: Sidecar, calls: list[tuple[str, str]]) -> list[Answer]:
    """Each call on one connection, one after the other, once start-up's call left a pooled connection."""
    await _settled(sidecar)
    async with connect(_port(sidecar)) as connection:
        for n, (verb, path) in enumerate(calls, 1):
            await connection.send(request(verb, f"/v1.0/invoke/myapp/method{path}", b"x" * 100))
            answers = await connection.answers(n)
    return answers


async def _on_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[tuple[str, str]]
) -> tuple[list[Answer], list[Answer], RawApp]:
    """The answers of the general path (the shortcut turned off) and of the lane with it, from the same app."""
    async with _raw_app() as (app, port):
        with monkeypatch.context() as patch:
            patch.setattr(DirectCall, "start", classmethod(lambda cls, *args, **kwargs: False))
            async with _sidecar(tmp_path / "general", port) as sidecar:
                general = await _answers(sidecar, calls)
        async with _sidecar(tmp_path / "direct", port) as sidecar:
            direct = await _answers(sidecar, calls)
        return general, direct, app


async def test_calls_after_the_first_are_direct_and_answered_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, directs: list[str]
) -> None:
    calls = [("POST", "/ok")] * 4
    general, lane, _ = await _on_both_paths(tmp_path, monkeypatch, calls)
    assert directs == ["ok"] * 4  # start-up's call for the subscriptions left a pooled connection
    assert [a.wire() for a in lane] == [a.wire() for a in general]
    assert lane[-1].status == 200 and lane[-1].body == b"ok" and lane[-1].header(b"content-length") == b"2"


async def test_a_post_whose_connection_breaks_fails_as_on_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = [("POST", "/ok"), ("POST", "/drop"), ("POST", "/ok")]
    general, lane, app = await _on_both_paths(tmp_path, monkeypatch, calls)
    assert [a.wire() for a in lane] == [a.wire() for a in general]
    assert lane[1].status == 500 and b"ERR_DIRECT_INVOKE" in lane[1].body
    assert b'Post \\"http://127.0.0.1:' in lane[1].body
    assert app.seen.count("/drop") == 2  # once per sidecar: never sent again


async def test_a_get_whose_kept_connection_breaks_is_sent_again(tmp_path: Path, directs: list[str]) -> None:
    async with _raw_app() as (app, port), _sidecar(tmp_path / "direct", port) as sidecar:
        answers = await _answers(sidecar, [("GET", "/ok"), ("GET", "/drop-once")])
    assert [(a.status, a.body) for a in answers] == [(200, b"ok"), (200, b"ok")]
    assert app.seen[-3:] == ["/ok", "/drop-once", "/drop-once"]  # on a new connection, as the client does
    assert directs == ["ok"]


async def test_a_large_answer_streams_and_a_large_error_comes_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = [("GET", "/ok"), ("GET", "/big"), ("GET", "/big-error"), ("GET", "/ok")]
    general, lane, _ = await _on_both_paths(tmp_path, monkeypatch, calls)
    assert [a.wire() for a in lane] == [a.wire() for a in general]
    big, error = lane[1], lane[2]
    assert big.header(b"transfer-encoding") == b"chunked" and big.body == b"b" * _BIG
    assert error.status == 500 and error.header(b"content-length") == str(_BIG).encode()
    assert error.body == b"e" * _BIG and error.header(b"x-app") == b"1"


async def test_an_answer_that_is_not_http_fails_as_on_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    general, lane, _ = await _on_both_paths(tmp_path, monkeypatch, [("GET", "/ok"), ("GET", "/bad-header")])
    assert [a.wire() for a in lane] == [a.wire() for a in general]
    assert lane[1].status == 500 and b"ERR_DIRECT_INVOKE" in lane[1].body and b"malformed HTTP" in lane[1].body
