"""The operations done directly, without a sidecar: the baselines' side of every comparison.

The bare ASGI app (``perf.baseline_app``) uses the same functions, so "direct", "bare ASGI" and "sidecar"
differ only by the hops in front of the very same backend call.

* Redis state: keys are hashes ``<appid>||<key>`` (Dapr's layout); a get or a save is one EVALSHA of the
  very script ``state.redis`` runs (``RedisState``: data, version and TTL in one call), with redis-py asyncio
  and hiredis on the sidecar's own pool and command path (``building_blocks._common.redis``).
* SQLite state: Dapr's table (``key, value, is_binary, etag, expiration_time, update_time``). Calls run on one
  worker thread per store, as the sidecar's ``state.sqlite`` does, so only the hops differ.
* Publishing: ``XADD <topic> * data <payload>`` (through ``execute`` too); Kafka: confluent-kafka's
  ``Producer`` with the sidecar's producer settings (idempotent, ``acks=all``, ``linger.ms=0``), awaiting
  each delivery report.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from building_blocks._common.redis import Script, split_address
from building_blocks._common.redis import redis_client as common_redis_client
from building_blocks.state.redis import READ_SCRIPT, WRITE_SCRIPT

__all__ = ("KafkaProducer", "RedisState", "SqliteStore", "redis_client", "state_key")

SEPARATOR = "||"


def state_key(app_id: str, key: str) -> str:
    """The key a sidecar of ``app_id`` stores ``key`` under (Dapr's default ``keyPrefix: appid``)."""
    return f"{app_id}{SEPARATOR}{key}"


def redis_client(address: str, max_connections: int = 20) -> Redis:
    """A client of ``host:port`` on the sidecar's own pool."""
    host, port = split_address(address, 6379)
    return common_redis_client({"host": host or "127.0.0.1", "port": port, "max_connections": max_connections})


class RedisState:
    """``state.redis``'s get and save, done directly: the same scripts, the same pool."""

    def __init__(self, client: Redis) -> None:
        self._read = Script(client, READ_SCRIPT)
        self._write = Script(client, WRITE_SCRIPT)

    async def get(self, key: str) -> bytes | None:
        (reply,) = await self._read(keys=[key])
        return reply[0] if reply else None

    async def save(self, key: str, value: bytes) -> None:
        await self._write(keys=[key], args=["s", "", "", value, 0])


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class SqliteStore:
    """Dapr's SQLite state table, one worker thread (like ``state.sqlite``)."""

    def __init__(self, path: str, table: str = "state") -> None:
        self._path, self._table = path, table
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="perf-sqlite")
        self._connection: sqlite3.Connection | None = None

    def _open(self) -> None:
        self._connection = sqlite3.connect(self._path, timeout=2.0, isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA busy_timeout = 2000")
        self._connection.execute("PRAGMA synchronous = NORMAL")  # the sidecar's setting (with WAL)

    async def open(self) -> SqliteStore:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open)
        return self

    def _get(self, key: str) -> bytes | None:
        assert self._connection is not None
        row = self._connection.execute(
            f"SELECT value FROM {self._table} WHERE key = ? AND (expiration_time IS NULL OR expiration_time > ?)",
            (key, _timestamp(time.time())),
        ).fetchone()
        return None if row is None else str(row[0]).encode()

    def _save(self, key: str, value: bytes) -> None:
        assert self._connection is not None
        self._connection.execute(
            f"INSERT INTO {self._table} (key, value, is_binary, etag, expiration_time, update_time)"
            " VALUES (?, ?, 0, ?, NULL, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " is_binary = 0, etag = excluded.etag, expiration_time = NULL, update_time = excluded.update_time",
            (key, value.decode(), uuid.uuid4().hex, _timestamp(time.time())),
        )

    async def get(self, key: str) -> bytes | None:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._get, key)

    async def save(self, key: str, value: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._save, key, value)

    def close(self) -> None:
        if self._connection is not None:
            self._executor.submit(self._connection.close).result()
            self._connection = None
        self._executor.shutdown(wait=True)


class KafkaProducer:
    """confluent-kafka's producer with a poll thread; ``publish`` resolves on the delivery report."""

    def __init__(self, brokers: str) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(
            {
                "bootstrap.servers": brokers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 0,
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="perf-kafka-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.5)

    async def publish(self, topic: str, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def delivered(error: Any, _: Any) -> None:
            loop.call_soon_threadsafe(_settle, future, error)

        self._producer.produce(topic, value=value, on_delivery=delivered)
        await future

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._producer.flush(10)


def _settle(future: asyncio.Future[None], error: Any) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(RuntimeError(f"kafka delivery failed: {error}"))
