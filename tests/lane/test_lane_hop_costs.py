"""What the hop's per-request shortcuts rest on: ``LaneCycle.relay`` writes ``respond``'s bytes, a server's default
headers are written fresh each time uvicorn makes a new list (its ``date``, once a second) and checked as before,
httptools' response parser lets through no header that uvicorn's checks would refuse (what ``relay`` skips), and
the client's request head drops framing headers whatever their case."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import httptools
import pytest
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

from app.http_client import HttpClient, HttpClientError, Response, _head
from app.lane.cycle import LaneCycle

Headers = list[tuple[bytes, bytes]]
_DEFAULTS: Headers = [(b"date", b"Sun, 29 Nov 2026 23:10:00 GMT"), (b"server", b"uvicorn")]


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


class _State:
    def __init__(self, default_headers: Headers) -> None:
        self.default_headers = default_headers


class _Protocol:
    def __init__(self, default_headers: Headers) -> None:
        self.server_state = _State(default_headers)
        self.transport = _Transport()
        self.completed = 0

    def on_response_complete(self) -> None:
        self.completed += 1


def _cycle(protocol: _Protocol, method: str = "POST", keep_alive: bool = True) -> LaneCycle:
    return LaneCycle(protocol, {"method": method}, {}, _never, keep_alive)  # type: ignore[arg-type]


async def _never(cycle: LaneCycle) -> None:
    raise AssertionError("not served")


def _respond(protocol: _Protocol, status: int, headers: Headers, body: bytes, **options: Any) -> bytes:
    cycle = _cycle(protocol, **options)
    framed = [*headers, (b"content-length", str(len(body)).encode())] if status not in (204, 304) else [*headers]
    cycle.respond(status, framed, body)
    return protocol.transport.written.pop()


def _relay(protocol: _Protocol, status: int, headers: Headers, body: bytes, **options: Any) -> bytes:
    cycle = _cycle(protocol, **options)
    cycle.relay(status, [*headers], body)
    assert cycle.response_complete and cycle.status == status and cycle.sent == len(body)
    return protocol.transport.written.pop()


ANSWERS = [
    (200, [(b"content-type", b"text/plain"), (b"x-app", b"a \tb")], b"hello"),
    (200, [], b""),
    (404, [(b"content-type", b"application/json")], b'{"error":"no"}'),
    (204, [(b"x-app", b"1")], b""),
    (304, [], b""),
]


@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize(("status", "headers", "body"), ANSWERS)
@pytest.mark.parametrize(
    "defaults",
    [_DEFAULTS, [], [(b"server", b"uvicorn"), (b"connection", b"close")], [(b"content-length", b"0")]],
    ids=["date-server", "none", "connection-close", "content-length"],
)
def test_relay_writes_what_respond_writes(
    defaults: Headers, status: int, headers: Headers, body: bytes, keep_alive: bool
) -> None:
    protocol = _Protocol(defaults)
    try:
        expected: bytes | type[Exception] = _respond(protocol, status, headers, body, keep_alive=keep_alive)
    except RuntimeError as exc:
        expected = type(exc)
    if isinstance(expected, bytes):
        assert _relay(protocol, status, headers, body, keep_alive=keep_alive) == expected
        assert protocol.transport.closed is (not keep_alive or (b"connection", b"close") in defaults)
    else:
        with pytest.raises(expected):
            _relay(protocol, status, headers, body, keep_alive=keep_alive)


def test_relay_of_a_bodyless_status_with_a_body_fails_as_respond_does() -> None:
    protocol = _Protocol(_DEFAULTS)
    with pytest.raises(RuntimeError, match="differs from Content-Length"):
        _cycle(protocol).relay(204, [], b"x")
    assert not protocol.transport.written


def test_default_headers_are_written_fresh_when_the_server_renews_them() -> None:
    protocol = _Protocol(_DEFAULTS)
    first = _relay(protocol, 200, [], b"x")
    protocol.server_state.default_headers = [(b"date", b"Sun, 29 Nov 2026 23:10:01 GMT"), (b"server", b"uvicorn")]
    second = _relay(protocol, 200, [], b"x")
    third = _respond(protocol, 200, [], b"x")
    assert b"23:10:00" in first and b"23:10:01" in second and b"23:10:01" in third
    for date in range(20):  # many lists in turn (two servers per sidecar): each is its own, the memo bounded
        protocol.server_state.default_headers = [(b"date", b"%d" % date), (b"server", b"uvicorn")]
        assert _relay(protocol, 200, [], b"x").startswith(b"HTTP/1.1 200 OK\r\ndate: %d\r\nserver: uvicorn\r\n" % date)


@pytest.mark.parametrize("header", [(b"bad name", b"v"), (b"x", b"bad\x01value")])
def test_an_invalid_default_header_fails_every_answer(header: tuple[bytes, bytes]) -> None:
    protocol = _Protocol([*_DEFAULTS, header])
    for _ in range(2):
        with pytest.raises(RuntimeError, match="Invalid HTTP header"):
            _cycle(protocol).respond(200, [(b"content-length", b"0")], b"")
        with pytest.raises(RuntimeError, match="Invalid HTTP header"):
            _cycle(protocol).relay(200, [], b"")
    assert not protocol.transport.written


def test_an_answer_header_is_still_checked_by_respond() -> None:
    protocol = _Protocol(_DEFAULTS)
    with pytest.raises(RuntimeError, match="Invalid HTTP header value"):
        _cycle(protocol).respond(200, [(b"x", b"a\nb"), (b"content-length", b"0")], b"")


class _Headers:
    def __init__(self) -> None:
        self.headers: Headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))


def _parsed(*pieces: bytes) -> Headers | None:
    sink = _Headers()
    parser = httptools.HttpResponseParser(sink)
    try:
        for piece in pieces:
            parser.feed_data(piece)
    except httptools.HttpParserError:
        return None
    return sink.headers


def _valid(headers: Headers) -> bool:
    return not any(HEADER_RE.search(name) or HEADER_VALUE_RE.search(value) for name, value in headers)


def test_the_clients_parser_lets_through_no_header_uvicorn_refuses() -> None:
    """``LaneCycle.relay`` writes a target's headers unchecked: httptools (strict llhttp, no leniencies) must
    refuse every name and value uvicorn's checks would."""
    for byte in range(256):
        char = bytes([byte])
        for line in (b"x: a" + char + b"b", b"x: " + char, b"x: a" + char, b"x" + char + b"y: v", char + b"y: v"):
            headers = _parsed(b"HTTP/1.1 200 OK\r\n" + line + b"\r\ncontent-length: 0\r\n\r\n")
            assert headers is None or _valid(headers), line
    rng = random.Random(7)
    alphabet = bytes(range(256))
    accepted = 0
    for _ in range(20_000):
        name = bytes(rng.choice(alphabet[32:127] if rng.random() < 0.8 else alphabet) for _ in range(rng.randint(0, 4)))
        value = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        message = b"HTTP/1.1 200 OK\r\n" + name + b": " + value + b"\r\ncontent-length: 0\r\n\r\n"
        cut = rng.randint(0, len(message))
        headers = _parsed(message[:cut], message[cut:])
        if headers is not None:
            accepted += 1
            assert _valid(headers), message
    assert accepted > 1000  # the fuzzing reached the parser's success path


def test_the_request_head_drops_framing_headers_in_any_case() -> None:
    headers = [
        (b"Host", b"evil"),
        (b"content-type", b"text/plain"),
        (b"Content-Length", b"99"),
        (b"TRANSFER-ENCODING", b"chunked"),
        (b"X-Kept", b"1"),
        (b"123", b"digits"),
    ]
    head = _head("POST", "127.0.0.1", 3500, b"/m", headers, b"abc", None)
    assert head == (
        b"POST /m HTTP/1.1\r\nhost: 127.0.0.1:3500\r\ncontent-type: text/plain\r\nX-Kept: 1\r\n123: digits\r\n"
        b"content-length: 3\r\n\r\n"
    )
    assert _head("GET", "::1", 80, b"/", [], b"", None) == b"GET / HTTP/1.1\r\nhost: [::1]\r\n\r\n"
    assert _head("GET", "h", 81, b"/", [], b"", None) == b"GET / HTTP/1.1\r\nhost: h:81\r\n\r\n"
    assert _head("PUT", "h", 81, b"/", [], _stream(), 5).endswith(b"host: h:81\r\ncontent-length: 5\r\n\r\n")
    assert _head("PUT", "h", 81, b"/", [], _stream(), None).endswith(b"\r\ntransfer-encoding: chunked\r\n\r\n")


async def _stream() -> AsyncIterator[bytes]:
    yield b"12345"


_ANSWERS = {
    b"/length": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
    b"/chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
    b"/head": b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n",  # a HEAD's answer: a length and no body
    b"/continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
}


async def test_a_kept_connection_parses_answers_of_every_framing_one_after_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client's connection reuses the parser of an answer that ended as a message for the next one: each
    framing in turn, on one connection, reads as on a new one."""
    connections = 0
    parsers = 0
    parser = httptools.HttpResponseParser

    def counted(protocol: object) -> httptools.HttpResponseParser:
        nonlocal parsers
        parsers += 1
        return parser(protocol)

    monkeypatch.setattr(httptools, "HttpResponseParser", counted)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(_ANSWERS[head.split(b" ")[1]])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            served.set()

    served = asyncio.Event()  # the connection's handler is done (its writer closed)
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HttpClient()
    try:
        expected = {b"/length": b"hello", b"/chunked": b"abcde", b"/empty": b"", b"/continue": b"ok"}
        for path in [b"/length", b"/chunked", b"/empty", b"/head", b"/length", b"/continue", b"/chunked"] * 2:
            method = "HEAD" if path == b"/head" else "GET"
            response = await client.request(method, "127.0.0.1", port, path)
            assert (await response.aread()) == expected.get(path, b"")
            assert response.status_code == (204 if path == b"/empty" else 200)
        for path in [b"/length", b"/chunked", b"/length"]:
            answers: list[bytes] = []
            done = asyncio.get_running_loop().create_future()
            exchange = _Exchange(answers, done)
            assert client.exchange("POST", "127.0.0.1", port, path, [], b"x", exchange, 4096)
            await done
            assert answers == [expected[path]]
        assert connections == 1
        assert parsers == 5  # the first, then a new one after each 204 and HEAD answer's head
    finally:
        await client.aclose()
        await asyncio.wait_for(served.wait(), 5)
        server.close()
        await server.wait_closed()


class _Exchange:
    def __init__(self, answers: list[bytes], done: asyncio.Future[None]) -> None:
        self.answers = answers
        self.done = done

    def answered(self, response: Response) -> None:
        self.answers.append(response.ready_body() or b"")
        self.done.set_result(None)

    def streaming(self, response: Response) -> None:
        self.done.set_exception(AssertionError("streamed"))

    def failed(self, error: HttpClientError) -> None:
        self.done.set_exception(error)
