"""``LeanConnection``'s own packing and reading (``building_blocks._common.redis``) behave as redis-py's: the same
bytes on the wire, the same replies and errors, a read timeout that fires after ``readTimeout`` with the same
message however many reads came before, retries for broken connections only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import hiredis
import pytest
from redis.asyncio import Connection, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from building_blocks._common.redis import (
    HIREDIS_PACKS_UP_TO,
    LARGE_COMMAND,
    LeanConnection,
    LeanConnectionPool,
    execute,
    pool_options,
    redis_client,
)
from building_blocks.component import Metadata
from tests.services import require_redis

pytestmark = pytest.mark.redis

PLAIN: list[tuple[Any, ...]] = [
    ("GET", "k"),
    ("EVALSHA", "0" * 40, 1, "k"),
    ("SET", "ключ", "värde ✓ 😀"),
    ("SET", b"", ""),
    ("INCRBY", "k", -5),
    ("X", 0, -(2**70), 2**70),
    ("SET", "k", "v" * (HIREDIS_PACKS_UP_TO - 4)),  # just within it
    (b"EVALSHA", b"\x00\xff\r\n", 7),
]
#: redis-py's packer: a float, memoryview, bytearray, a command name of two words or not alphanumeric
OTHER: list[tuple[Any, ...]] = [
    ("INCRBYFLOAT", "k", 1.5),
    ("SET", "k", memoryview(b"value")),
    ("SET", "k", bytearray(b"value")),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT  LIST",),
    ("JSON.GET", "k"),
    ("SET", "k", b"v" * (HIREDIS_PACKS_UP_TO + 1)),  # one value too big for hiredis to pack cheaply
    ("MSET", *(f"v{i}" for i in range(HIREDIS_PACKS_UP_TO // 2 + 1))),  # many small ones, too big in all
]


def joined(packed: list[bytes] | list[bytes | memoryview]) -> bytes:
    return b"".join(bytes(part) for part in packed)


@pytest.mark.parametrize("args", PLAIN + OTHER)
def test_packing_gives_redis_pys_bytes(args: tuple[Any, ...]) -> None:
    lean = LeanConnection().pack_command(*args)
    assert joined(lean) == joined(Connection().pack_command(*args))
    if args in PLAIN:
        assert lean == [hiredis.pack_command(args)]
    else:
        assert lean == Connection().pack_command(*args)  # a big value stays a piece of its own, not copied


def test_packing_fails_as_redis_pys_and_large_or_non_utf8_commands_are_redis_pys() -> None:
    for bad, error in (
        (("SET", "k", True), DataError),
        (("SET", "k", None), DataError),
        (("SET", "k", "\ud800"), UnicodeEncodeError),
    ):
        with pytest.raises(error):
            LeanConnection().pack_command(*bad)
    large = ("DEL", *(f"key{i}" for i in range(LARGE_COMMAND + 1)))
    assert LeanConnection().pack_command(*large) == Connection().pack_command(*large)
    latin = LeanConnection(encoding="latin-1")
    assert latin.pack_command("SET", "k", "värde") == Connection(encoding="latin-1").pack_command("SET", "k", "värde")


class ScriptedServer:
    """A Redis stand-in: ``answer(connection number, command)`` gives the bytes to send back, None to stay
    silent, or b"" to close the connection."""

    def __init__(self, answer: Callable[[int, list[bytes]], bytes | None]) -> None:
        self.answer = answer
        self.connections = 0
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number, parser = self.connections, hiredis.Reader()
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    reply = self.answer(number, command)
                    if reply == b"":
                        return
                    if reply is not None:
                        writer.write(reply)
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ScriptedServer]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self


def redis_client_on(pool: LeanConnectionPool) -> Redis:
    return Redis(connection_pool=pool)


def resp2_pool(port: int, timeout: float, retries: int = 0) -> LeanConnectionPool:
    """A pool without the RESP3 handshake, for a ``ScriptedServer``."""
    return LeanConnectionPool(
        host="127.0.0.1",
        port=port,
        protocol=2,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), retries, supported_errors=(ConnectionError,)),
        max_connections=1,
    )


async def test_a_read_times_out_after_its_own_timeout_however_many_reads_came_before() -> None:
    """The connection's one deadline timer, armed by the first read, is armed again for a later read's."""
    frozen = False

    def answer(_: int, command: list[bytes]) -> bytes | None:
        return None if frozen else b"+PONG\r\n"

    async with ScriptedServer(answer).running() as server:
        pool = resp2_pool(server.port, 0.4)
        client = redis_client_on(pool)
        try:
            assert await execute(client, "PING") == b"PONG"  # arms the timer for now + 0.4s
            await asyncio.sleep(0.25)
            frozen = True
            started = time.monotonic()
            expected = f"timed out after 0.4s waiting for a reply from Redis at 127.0.0.1:{server.port} (readTimeout)"
            with pytest.raises(RedisTimeoutError) as raised:
                await execute(client, "PING")  # the timer fires 0.15s in, before this read's deadline
            elapsed = time.monotonic() - started
            assert str(raised.value) == expected
            assert 0.38 <= elapsed < 1.0, elapsed
            assert server.connections == 1  # a timed-out command is not sent again
            frozen = False
            assert await execute(client, "PING") == b"PONG"  # on a new connection
            assert server.connections == 2
        finally:
            await pool.disconnect()


async def test_a_cancellation_or_an_outer_timeout_is_not_a_read_timeout() -> None:
    async with ScriptedServer(lambda _, command: None).running() as server:
        pool = resp2_pool(server.port, 5.0)
        client = redis_client_on(pool)
        try:
            started = time.monotonic()
            with pytest.raises(TimeoutError) as raised:
                async with asyncio.timeout(0.2):
                    await execute(client, "PING")
            assert not isinstance(raised.value, RedisTimeoutError)
            assert time.monotonic() - started < 1.0
            call = asyncio.ensure_future(execute(client, "PING"))
            await asyncio.sleep(0.1)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert not pool._in_use_connections
        finally:
            await pool.disconnect()


async def test_replies_errors_push_messages_and_buffered_replies() -> None:
    def answer(_: int, command: list[bytes]) -> bytes | None:
        if command[0] == b"FAIL":
            return b"-ERR no such thing\r\n"
        if command[0] == b"PUSHED":  # an out-of-band message before the reply
            return b">2\r\n$7\r\nmessage\r\n$2\r\nhi\r\n:7\r\n"
        if command[0] == b"TWICE":  # the second reply is already buffered when it is read
            return b"+ONE\r\n+TWO\r\n"
        return b"*3\r\n$1\r\na\r\n:2\r\n*0\r\n"

    async with ScriptedServer(answer).running() as server:
        pool = resp2_pool(server.port, 1.0)
        client = redis_client_on(pool)
        try:
            assert await execute(client, "ANY") == [b"a", 2, []]
            with pytest.raises(ResponseError, match="no such thing"):
                await execute(client, "FAIL")
            assert await execute(client, "PUSHED") == 7
            connection = await pool.get_connection()
            assert isinstance(connection, LeanConnection)
            try:
                await connection.send_packed_command(connection.pack_command("TWICE"))
                assert await connection.read_response() == b"ONE"
                assert connection.unread()
                assert await connection.read_response() == b"TWO"
                assert not connection.unread()
            finally:
                await pool.release(connection)
            assert server.connections == 1  # an error reply leaves the connection in use
        finally:
            await pool.disconnect()


async def test_a_connection_closed_before_the_reply_is_retried_up_to_max_retries() -> None:
    def answer(number: int, command: list[bytes]) -> bytes | None:
        return b"" if number <= 2 else b"+PONG\r\n"  # the first two connections close on the first command

    async with ScriptedServer(answer).running() as server:
        pool = resp2_pool(server.port, 1.0, retries=1)
        try:
            with pytest.raises(ConnectionError, match="Connection closed by server"):
                await execute(redis_client_on(pool), "PING")
            assert server.connections == 2
        finally:
            await pool.disconnect()
        pool = resp2_pool(server.port, 1.0, retries=2)
        try:
            assert await execute(redis_client_on(pool), "PING") == b"PONG"
            assert server.connections == 3
        finally:
            await pool.disconnect()


async def test_against_redis_the_lean_path_reads_what_redis_py_reads() -> None:
    client = redis_client(pool_options(Metadata({"redisHost": require_redis(), "readTimeout": "2s"})))
    key = f"lean-{uuid4()}"
    try:
        values: list[str | bytes] = ["plain", "ключ ✓", b"\x00\xff" * 5000, ""]
        for value in values:
            await execute(client, "SET", key, value)
            got = await execute(client, "GET", key)
            assert got == (value.encode() if isinstance(value, str) else value)
            assert await client.get(key) == got
        assert await execute(client, "HSET", key + "h", "a", 1, "b", -2) == 2
        assert await execute(client, "HGETALL", key + "h") == {b"a": b"1", b"b": b"-2"}  # RESP3: a map
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await execute(client, "GET", key + "h")
        many = await asyncio.gather(*(execute(client, "INCR", key + "n") for _ in range(300)))
        assert sorted(many) == list(range(1, 301))
    finally:
        await client.delete(key, key + "h", key + "n")
        await client.aclose(close_connection_pool=True)
