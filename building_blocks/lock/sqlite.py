"""``lock.sqlite``: locks in a table of a SQLite file; the embedded default.

Metadata: the connection settings of ``building_blocks._common.sqlite`` (``connectionString`` required,
``busyTimeout``, ``disableWAL``), ``tableName`` (``locks``), ``cleanupInterval`` (1h; <= 0 disables deleting
expired rows, which are ignored anyway), ``keyPrefix`` (read by the block).

Correct across several sidecar processes sharing the file: every operation is one ``BEGIN IMMEDIATE``
transaction, so checking the holder and changing the row are atomic. Expiry times are UNIX timestamps of
this machine's clock, which every process sharing the file reads.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass, field

from building_blocks._common import periodic
from building_blocks._common.metadata import LOCK, duration, group, parse, text
from building_blocks._common.sqlite import SQLiteDatabase, SQLiteSettings, table_name, write
from building_blocks.component import ComponentContext, Metadata
from building_blocks.lock.base import LockStatus, LockStore, RenewRequest, TryLockRequest, UnlockRequest

__all__ = ("SQLiteLockStore",)


@dataclass(frozen=True, slots=True)
class SQLiteLockMetadata:
    connection: SQLiteSettings = field(metadata=group(SQLiteSettings))
    table_name: str = text("tableName", "locks")
    cleanup_interval: float = duration("cleanupInterval", 3600.0)  # <= 0: no purge


class SQLiteLockStore(LockStore):
    """One row per held lock: ``resource, owner, expires_at``."""

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(SQLiteLockMetadata, metadata, LOCK)
        self._db = SQLiteDatabase(settings.connection, self.name)
        self._table = table_name(settings.table_name, metadata.where)
        self._cleanup_interval = settings.cleanup_interval
        self._cleanup: asyncio.Task[None] | None = None
        t = self._table
        self._take = (
            f"INSERT INTO {t} (resource, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT (resource) DO UPDATE"
            f" SET owner = excluded.owner, expires_at = excluded.expires_at WHERE {t}.expires_at <= ?"
        )
        self._holder = f"SELECT owner FROM {t} WHERE resource = ? AND expires_at > ?"

    async def init(self) -> None:
        await self._db.open(
            f"CREATE TABLE IF NOT EXISTS {self._table} (resource TEXT NOT NULL PRIMARY KEY,"
            " owner TEXT NOT NULL, expires_at REAL NOT NULL)"
        )
        if self._cleanup_interval > 0:
            self._cleanup = periodic.every(self._cleanup_interval, self._purge, f"{self.name}-cleanup")

    async def close(self) -> None:
        await periodic.stop(self._cleanup)
        self._cleanup = None
        await self._db.close()

    async def ping(self) -> None:
        await self._db.run(lambda connection: connection.execute("SELECT 1").fetchone())

    async def _purge(self) -> None:
        await self._db.run(
            lambda connection: connection.execute(f"DELETE FROM {self._table} WHERE expires_at <= ?", (time.time(),))
        )

    # -- worker thread ---------------------------------------------------------------------------------

    def _try_lock(self, connection: sqlite3.Connection, request: TryLockRequest) -> bool:
        now = time.time()
        with write(connection):
            cursor = connection.execute(
                self._take, (request.resource_id, request.lock_owner, now + request.expiry_in_seconds, now)
            )
            return cursor.rowcount == 1

    def _status(self, connection: sqlite3.Connection, resource: str, owner: str, now: float) -> LockStatus:
        row = connection.execute(self._holder, (resource, now)).fetchone()
        if row is None:
            return LockStatus.LOCK_DOES_NOT_EXIST
        return LockStatus.SUCCESS if row[0] == owner else LockStatus.LOCK_BELONGS_TO_OTHERS

    def _unlock(self, connection: sqlite3.Connection, request: UnlockRequest) -> LockStatus:
        with write(connection):
            status = self._status(connection, request.resource_id, request.lock_owner, time.time())
            if status is LockStatus.SUCCESS:
                connection.execute(f"DELETE FROM {self._table} WHERE resource = ?", (request.resource_id,))
            return status

    def _renew(self, connection: sqlite3.Connection, request: RenewRequest) -> LockStatus:
        now = time.time()
        with write(connection):
            status = self._status(connection, request.resource_id, request.lock_owner, now)
            if status is LockStatus.SUCCESS:
                connection.execute(
                    f"UPDATE {self._table} SET expires_at = ? WHERE resource = ?",
                    (now + request.expiry_in_seconds, request.resource_id),
                )
            return status

    # -- the contract ------------------------------------------------------------------------------------

    async def try_lock(self, request: TryLockRequest) -> bool:
        return await self._db.run(self._try_lock, request)

    async def unlock(self, request: UnlockRequest) -> LockStatus:
        return await self._db.run(self._unlock, request)

    async def renew(self, request: RenewRequest) -> LockStatus:
        return await self._db.run(self._renew, request)
