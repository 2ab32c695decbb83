"""``lock.postgresql``: locks as rows of a PostgreSQL table, for sidecars on any number of machines.

Every operation is one statement, atomic under concurrency: taking a lock is an ``INSERT ... ON CONFLICT DO
UPDATE ... WHERE expired``; unlock and renew are a ``DELETE`` / ``UPDATE`` of the row held by the owner,
and the same statement tells a missing lock from one held by others. Expiry is measured by the database's
clock, the one clock every sidecar shares.

Metadata: the connection settings of ``building_blocks._common.postgresql`` (``connectionString``
required, ``timeout``, ``maxConns``), ``tableName`` (``layotto_lock``, may be ``schema.table``),
``cleanupInterval`` (1h; <= 0 disables deleting expired rows, which are ignored anyway), ``keyPrefix``
(read by the block).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from building_blocks._common import periodic
from building_blocks._common.metadata import LOCK, duration, group, parse, text
from building_blocks._common.postgresql import PostgreSQLPool, PostgreSQLSettings, table_name
from building_blocks.component import ComponentContext, Metadata
from building_blocks.lock.base import LockStatus, LockStore, RenewRequest, TryLockRequest, UnlockRequest

__all__ = ("PostgreSQLLockStore",)

_NOW = "clock_timestamp()"
_EXPIRY = f"{_NOW} + $3::bigint * interval '1 second'"


class _SQL:
    """Every statement, built once from the (quoted) table name."""

    def __init__(self, t: str) -> None:
        self.create = (
            f"CREATE TABLE IF NOT EXISTS {t} (resource text NOT NULL PRIMARY KEY, owner text NOT NULL, "
            "expiry timestamp with time zone NOT NULL)"
        )
        self.take = (
            f"INSERT INTO {t} AS cur (resource, owner, expiry) VALUES ($1, $2, {_EXPIRY}) "
            f"ON CONFLICT (resource) DO UPDATE SET owner = excluded.owner, expiry = excluded.expiry "
            f"WHERE cur.expiry <= {_NOW}"
        )
        # The outer SELECT sees the table as it was before the CTE changed it.
        status = (
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM changed) THEN 0 "
            f"WHEN EXISTS (SELECT 1 FROM {t} WHERE resource = $1 AND expiry > {_NOW}) THEN 2 ELSE 1 END"
        )
        self.unlock = (
            f"WITH changed AS (DELETE FROM {t} WHERE resource = $1 AND owner = $2 AND expiry > {_NOW} "
            f"RETURNING 1) {status}"
        )
        self.renew = (
            f"WITH changed AS (UPDATE {t} SET expiry = {_EXPIRY} WHERE resource = $1 AND owner = $2 "
            f"AND expiry > {_NOW} RETURNING 1) {status}"
        )
        self.purge = f"DELETE FROM {t} WHERE expiry <= {_NOW}"


@dataclass(frozen=True, slots=True)
class PostgreSQLLockMetadata:
    connection: PostgreSQLSettings = field(metadata=group(PostgreSQLSettings))
    table_name: str = text("tableName", "layotto_lock")
    cleanup_interval: float = duration("cleanupInterval", 3600.0)  # <= 0: no cleanup


class PostgreSQLLockStore(LockStore):
    """One row per held lock: ``resource, owner, expiry``."""

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(PostgreSQLLockMetadata, metadata, LOCK)
        table = table_name(settings.table_name, metadata.where)
        self._pool = PostgreSQLPool(settings.connection, self.name, table, metadata.where)
        self._sql = _SQL(self._pool.table)
        self._cleanup_interval = settings.cleanup_interval
        self._cleanup: asyncio.Task[None] | None = None

    async def init(self) -> None:
        await self._pool.open(self._sql.create)
        if self._cleanup_interval > 0:
            self._cleanup = periodic.every(self._cleanup_interval, self._purge, f"{self.name}-cleanup")

    async def close(self) -> None:
        await periodic.stop(self._cleanup)
        self._cleanup = None
        await self._pool.close()

    async def ping(self) -> None:
        async with self._pool.connection("ping") as conn:
            await conn.fetchval("SELECT 1")

    async def _purge(self) -> None:
        async with self._pool.connection("deleting expired locks") as conn:
            await conn.execute(self._sql.purge)

    async def try_lock(self, request: TryLockRequest) -> bool:
        async with self._pool.connection("try lock") as conn:
            status = await conn.execute(
                self._sql.take, request.resource_id, request.lock_owner, request.expiry_in_seconds
            )
        return bool(status.endswith(" 1"))

    async def unlock(self, request: UnlockRequest) -> LockStatus:
        async with self._pool.connection("unlock") as conn:
            status = await conn.fetchval(self._sql.unlock, request.resource_id, request.lock_owner)
        return LockStatus(status)

    async def renew(self, request: RenewRequest) -> LockStatus:
        async with self._pool.connection("renew") as conn:
            status = await conn.fetchval(
                self._sql.renew, request.resource_id, request.lock_owner, request.expiry_in_seconds
            )
        return LockStatus(status)
