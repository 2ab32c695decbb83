"""The operations done directly, without a sidecar: the baselines' side of every comparison.

The bare ASGI app (``perf.baseline_app``) uses the same functions, so "direct", "bare ASGI" and "sidecar"
differ only by the hops in front of the very same backend call.

* Redis state: keys are hashes ``<appid>||<key>`` (Dapr's layout); a get or a save is one EVALSHA of the
  very script ``state.redis`` runs (``RedisState``: data, version and TTL in one call), with redis-py asyncio
  and hiredis on the sidecar's own pool and command path (``building_blocks._common.redis``).
* SQLite state: the sidecar's own ``state.sqlite`` component on the same file (``SqliteStore``), called
  directly: the same statements, run inline while the file is free and on its worker thread when busy, so
  only the hops (HTTP, routing, the block) differ.
* Publishing: ``XADD <topic> * data <payload>`` (through ``execute`` too); Kafka: confluent-kafka's
  ``Producer`` with the sidecar's producer settings (idempotent, ``acks=all``, ``linger.ms=0``), awaiting
  each delivery report.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from redis.asyncio import Redis

from building_blocks._common.redis import Script, split_address
from building_blocks._common.redis import redis_client as common_redis_client
from building_blocks.component import Metadata
from building_blocks.state.base import GetRequest, SetRequest
from building_blocks.state.redis import READ_SCRIPT, WRITE_SCRIPT
from building_blocks.state.sqlite import SQLiteStateStore

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


class SqliteStore:
    """``state.sqlite``'s get and save, done directly: the sidecar's component on the sidecar's file."""

    def __init__(self, path: str) -> None:
        # no purge task of its own: the sidecar's store purges the same table
        metadata = Metadata({"connectionString": path, "cleanupInterval": "0"}, "perf sqlite baseline")
        self._store = SQLiteStateStore("perf-sqlite", metadata)

    async def open(self) -> SqliteStore:
        await self._store.init()
        return self

    async def get(self, key: str) -> bytes | None:
        found = await self._store.get(GetRequest(key))
        return None if found is None else found.value

    async def save(self, key: str, value: bytes) -> None:
        await self._store.set(SetRequest(key, value))

    async def close(self) -> None:
        await self._store.close()


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
