"""What every Redis component shares, against the real Redis: ``LeanConnectionPool`` (bounded, blocking with a
timeout, fair to waiters, never handing out a connection with something unread on it), ``LeanConnection``'s
direct writes, and ``Script`` (EVALSHA, loaded again when the server forgot it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

from building_blocks._common.redis import LeanConnection, LeanConnectionPool, Script, redis_client
from tests.services import require_redis

pytestmark = pytest.mark.redis


@pytest.fixture
async def pool() -> AsyncIterator[LeanConnectionPool]:
    host, _, port = require_redis().partition(":")
    pool = LeanConnectionPool(
        host=host, port=int(port or 6379), max_connections=2, timeout=0.3, retry=Retry(NoBackoff(), 1)
    )
    yield pool
    await pool.disconnect()


async def test_at_most_max_connections_and_a_waiter_gets_the_next_one_released(pool: LeanConnectionPool) -> None:
    first, second = await pool.get_connection(), await pool.get_connection()
    assert first is not second
    third = asyncio.ensure_future(pool.get_connection())
    await asyncio.sleep(0.05)
    assert not third.done()
    await pool.release(second)
    assert await asyncio.wait_for(third, 1) is second
    await pool.release(first)
    await pool.release(second)
    await pool.release(second)  # a second release is ignored
    assert await pool.get_connection() is not await pool.get_connection()


async def test_waiting_longer_than_the_timeout_fails_and_a_cancelled_waiter_passes_its_turn(
    pool: LeanConnectionPool,
) -> None:
    held = [await pool.get_connection(), await pool.get_connection()]
    expected = r"timed out after 0.3s waiting for one of the 2 connections to Redis at .* \(poolTimeout\): all are busy"
    with pytest.raises(ConnectionError, match=expected):
        await pool.get_connection()
    cancelled = asyncio.ensure_future(pool.get_connection())
    waiting = asyncio.ensure_future(pool.get_connection())
    await asyncio.sleep(0.01)
    await pool.release(held.pop())  # wakes `cancelled`, which leaves before taking it
    cancelled.cancel()
    assert await asyncio.wait_for(waiting, 1) is not None
    await pool.release(held.pop())


async def test_commands_through_the_client_run_concurrently_on_the_bounded_pool() -> None:
    client = redis_client({"host": "127.0.0.1", "port": int(require_redis().partition(":")[2] or 6379)})
    key = f"pool-{uuid4()}"
    try:
        assert isinstance(client.connection_pool, LeanConnectionPool)
        await asyncio.gather(*(client.incr(key) for _ in range(200)))
        assert await client.get(key) == b"200"
        assert len(client.connection_pool._in_use_connections) == 0
    finally:
        await client.delete(key)
        await client.aclose(close_connection_pool=True)


async def test_a_connection_with_unread_data_or_closed_by_the_server_is_renewed(pool: LeanConnectionPool) -> None:
    client = Redis(connection_pool=pool)
    key = f"pool-{uuid4()}"
    try:
        connection = await pool.get_connection()
        await connection.send_command("SET", key, "stale-reply-left-unread")
        await asyncio.sleep(0.05)
        await pool.release(connection)
        again = await pool.get_connection()
        assert again is connection and not await again.can_read()  # reconnected: the stale "+OK" is gone
        await pool.release(again)
        assert await client.get(key) == b"stale-reply-left-unread"

        client_id = await client.client_id()
        await client.execute_command("CLIENT", "KILL", "ID", client_id)
        assert await client.get(key) == b"stale-reply-left-unread"
    finally:
        await client.delete(key)


async def test_commands_go_straight_to_the_socket_and_big_ones_still_arrive_whole() -> None:
    host, _, port = require_redis().partition(":")
    client = redis_client({"host": host, "port": int(port or 6379), "socket_timeout": 3.0})
    key = f"pool-{uuid4()}"
    big = b"x" * (16 << 20)  # far more than a socket buffer: the transport keeps the rest and sends it later
    try:
        assert client.connection_pool.connection_class is LeanConnection
        await asyncio.gather(client.set(key, big), client.set(f"{key}-small", b"1"))
        assert await client.get(key) == big
        assert await client.mget(key + "-small", key + "-missing") == [b"1", None]
    finally:
        await client.delete(key, f"{key}-small")
        await client.aclose(close_connection_pool=True)


async def test_a_script_runs_by_its_sha_and_is_loaded_again_when_the_server_forgot_it(pool: LeanConnectionPool) -> None:
    client = Redis(connection_pool=pool)
    key = f"pool-{uuid4()}"
    script = Script(client, "return redis.call('INCRBY', KEYS[1], ARGV[1])")
    try:
        assert await script(keys=[key], args=[2]) == 2
        await client.script_flush()
        assert (await client.script_exists(script.sha)) == [False]
        assert await script(keys=[key], args=[3]) == 5
        assert (await client.script_exists(script.sha)) == [True]
        connection = await pool.get_connection()
        await pool.release(connection)
        connection._writer.transport.abort()  # type: ignore[union-attr]  # gone, and the connection can't know yet
        assert await script(keys=[key], args=[1]) == 6  # the send fails, so it is retried on a new connection
    finally:
        await client.delete(key)
