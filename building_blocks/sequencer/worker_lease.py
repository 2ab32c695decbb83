"""Worker ids of ``sequencer.snowflake``: fixed in the metadata, or leased in Redis or a SQLite file.

A lease gives a worker id to one sidecar at a time and records, per worker id, ``until``: the last
millisecond the holder may put in an id. The holder moves ``until`` forward as it renews the lease and never
goes past it, and the next holder of that worker id starts after it. So two holders of one worker id, one
after the other, never make the same id, even when their clocks disagree or the first one stopped without
releasing. Releasing sets ``until`` to the last millisecond really used, so a restarted sidecar goes on at
once.
"""

from __future__ import annotations

import math
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from building_blocks._common.metadata import read
from building_blocks._common.redis import Script, redis_client, translated
from building_blocks._common.sqlite import SQLiteDatabase, SQLiteSettings, write
from building_blocks.component import Metadata
from building_blocks.errors import ComponentError

__all__ = ("FOREVER", "FixedWorker", "Grant", "RedisWorkerLease", "SQLiteWorkerLease", "WorkerLease")

FOREVER = math.inf


@dataclass(frozen=True, slots=True)
class Grant:
    """A worker id, the last millisecond its previous holders used, and the last one this holder may use."""

    worker: int
    after: int
    until: float


class WorkerLease:
    """How a snowflake sequencer gets its worker id. ``renewable`` leases must be renewed before ``until``."""

    renewable = True

    async def open(self) -> None:
        """Connect to the backend."""

    async def acquire(self, workers: int, until: int) -> Grant:
        """A free worker id below ``workers``, leased until the millisecond ``until``."""
        raise NotImplementedError

    async def renew(self, until: int) -> float | None:
        """Extend the lease to ``until``; the new limit, or None when the lease was lost."""
        raise NotImplementedError

    async def release(self, used_until: int) -> None:
        """Give the worker id back, recording the last millisecond used."""

    async def close(self) -> None:
        """Disconnect."""


class FixedWorker(WorkerLease):
    """``workerId`` metadata: the operator keeps worker ids unique; restarts rely on the clock going forward."""

    renewable = False

    def __init__(self, worker: int) -> None:
        self.worker = worker

    async def acquire(self, workers: int, until: int) -> Grant:
        if not 0 <= self.worker < workers:
            raise ComponentError(f"workerId {self.worker} is not below {workers}")
        return Grant(self.worker, 0, FOREVER)

    async def renew(self, until: int) -> float | None:
        return FOREVER


# KEYS[1]: prefix of lease keys, KEYS[2]: hash of "until" by worker. ARGV: token, ttl ms, workers, until.
_ACQUIRE = """
for worker = 0, tonumber(ARGV[3]) - 1 do
  if redis.call("SET", KEYS[1] .. worker, ARGV[1], "NX", "PX", ARGV[2]) then
    local after = redis.call("HGET", KEYS[2], worker) or "0"
    local limit = ARGV[4]
    if tonumber(after) > tonumber(limit) then limit = after end
    redis.call("HSET", KEYS[2], worker, limit)
    return {worker, after, limit}
  end
end
return false
"""

# KEYS[1]: the lease, KEYS[2]: the hash. ARGV: token, ttl ms, worker, until. Replies the new until, or false.
_RENEW = """
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return false end
redis.call("PEXPIRE", KEYS[1], ARGV[2])
local limit = redis.call("HGET", KEYS[2], ARGV[3]) or "0"
if tonumber(ARGV[4]) > tonumber(limit) then limit = ARGV[4] end
redis.call("HSET", KEYS[2], ARGV[3], limit)
return limit
"""

# KEYS[1]: the lease, KEYS[2]: the hash. ARGV: token, worker, last millisecond used.
_RELEASE = """
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
redis.call("HSET", KEYS[2], ARGV[2], ARGV[3])
redis.call("DEL", KEYS[1])
return 1
"""


class RedisWorkerLease(WorkerLease):
    """Keys ``<namespace>||worker||<id>`` (the lease, with a TTL) and the hash ``<namespace>||until``."""

    _acquire: Script
    _renew: Script
    _release: Script

    def __init__(self, pool_options: dict[str, Any], namespace: str, ttl: float) -> None:
        self._pool_options = pool_options
        self._leases = f"{namespace}||worker||"
        self._until = f"{namespace}||until"
        self._ttl_ms = int(ttl * 1000)
        self._token = uuid.uuid4().hex
        self._worker = -1
        self._client: Redis | None = None

    async def open(self) -> None:
        self._client = redis_client(self._pool_options)
        self._acquire = Script(self._client, _ACQUIRE)
        self._renew = Script(self._client, _RENEW)
        self._release = Script(self._client, _RELEASE)
        with translated():
            await self._client.ping()

    async def acquire(self, workers: int, until: int) -> Grant:
        with translated():
            reply = await self._acquire(
                keys=[self._leases, self._until], args=[self._token, self._ttl_ms, workers, until]
            )
        if not reply:
            raise ComponentError(f"all {workers} snowflake worker ids are leased")
        worker, after, granted = (int(value) for value in reply)
        self._worker = worker
        return Grant(worker, after, granted)

    async def renew(self, until: int) -> float | None:
        with translated():
            reply = await self._renew(
                keys=[self._leases + str(self._worker), self._until],
                args=[self._token, self._ttl_ms, self._worker, until],
            )
        return None if reply is None else int(reply)

    async def release(self, used_until: int) -> None:
        with translated():
            await self._release(
                keys=[self._leases + str(self._worker), self._until], args=[self._token, self._worker, used_until]
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose(close_connection_pool=True)
            self._client = None


class SQLiteWorkerLease(WorkerLease):
    """Rows ``namespace, worker, owner, expires_at, until_ms`` in a table of a SQLite file."""

    def __init__(self, meta: Metadata, name: str, namespace: str, ttl: float) -> None:
        self._db = SQLiteDatabase(read(SQLiteSettings, meta), name)
        self._namespace = namespace
        self._ttl = ttl
        self._token = uuid.uuid4().hex
        self._worker = -1

    async def open(self) -> None:
        await self._db.open(
            "CREATE TABLE IF NOT EXISTS snowflake_workers (namespace TEXT NOT NULL, worker INTEGER NOT NULL,"
            " owner TEXT NOT NULL, expires_at REAL NOT NULL, until_ms INTEGER NOT NULL,"
            " PRIMARY KEY (namespace, worker))"
        )

    def _acquire(self, connection: sqlite3.Connection, workers: int, until: int) -> Grant:
        now = time.time()
        with write(connection):
            rows = connection.execute(
                "SELECT worker, expires_at, until_ms FROM snowflake_workers WHERE namespace = ?", (self._namespace,)
            ).fetchall()
            held = {worker for worker, expires_at, _ in rows if expires_at > now}
            worker = next((w for w in range(workers) if w not in held), None)
            if worker is None:
                raise ComponentError(f"all {workers} snowflake worker ids are leased")
            after = next((int(until_ms) for w, _, until_ms in rows if w == worker), 0)
            granted = max(after, until)
            connection.execute(
                "INSERT OR REPLACE INTO snowflake_workers VALUES (?, ?, ?, ?, ?)",
                (self._namespace, worker, self._token, now + self._ttl, granted),
            )
        self._worker = worker
        return Grant(worker, after, granted)

    def _renew(self, connection: sqlite3.Connection, until: int) -> float | None:
        now = time.time()
        with write(connection):
            row = connection.execute(
                "UPDATE snowflake_workers SET expires_at = ?, until_ms = max(until_ms, ?)"
                " WHERE namespace = ? AND worker = ? AND owner = ? AND expires_at > ? RETURNING until_ms",
                (now + self._ttl, until, self._namespace, self._worker, self._token, now),
            ).fetchone()
        return None if row is None else int(row[0])

    def _release(self, connection: sqlite3.Connection, used_until: int) -> None:
        with write(connection):
            connection.execute(
                "UPDATE snowflake_workers SET expires_at = 0, until_ms = ?"
                " WHERE namespace = ? AND worker = ? AND owner = ?",
                (used_until, self._namespace, self._worker, self._token),
            )

    async def acquire(self, workers: int, until: int) -> Grant:
        return await self._db.run(self._acquire, workers, until)

    async def renew(self, until: int) -> float | None:
        return await self._db.run(self._renew, until)

    async def release(self, used_until: int) -> None:
        await self._db.run(self._release, used_until)

    async def close(self) -> None:
        await self._db.close()
