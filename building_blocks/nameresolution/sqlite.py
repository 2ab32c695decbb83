"""``nameresolution.sqlite`` — the embedded default: a registry of live sidecars in a SQLite file.

Every sidecar that serves an app inserts ``app id -> host:port`` (its internal port) into a table of the
shared file and refreshes its row every third of ``updateInterval`` (a heartbeat); rows older than
``updateInterval`` are dead: never returned, and deleted by the next heartbeat of any sidecar. Closing
deletes the row. A sidecar that finds its address taken over by another registration stops advertising
itself (Dapr exits there).

Configuration (Dapr's names): ``connectionString`` (default ``~/.layotto/data/nameresolution.db``),
``tableName`` (``hosts``), ``updateInterval`` (5s), ``busyTimeout`` (800ms), ``disableWAL``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass

from building_blocks._common.metadata import NAMERESOLUTION, boolean, duration, parse, text
from building_blocks._common.periodic import every, stop
from building_blocks._common.sqlite import SQLiteDatabase, SQLiteSettings, table_name, write
from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import SpecError
from building_blocks.nameresolution.base import NameResolver, NoHost, ResolveRequest

__all__ = ("DEFAULT_DATABASE", "SQLiteNameResolver", "SQLiteNameResolverMetadata")

log = logging.getLogger("layotto.nameresolution")
DEFAULT_DATABASE = "~/.layotto/data/nameresolution.db"


def default_namespace(namespace: str) -> str:
    return namespace or "default"


@dataclass(frozen=True, slots=True)
class SQLiteNameResolverMetadata:
    """SQLite's connection settings with this resolver's defaults (a file every local sidecar shares)."""

    connection_string: str = text("connectionString", DEFAULT_DATABASE)
    busy_timeout: float = duration("busyTimeout", 0.8)
    disable_wal: bool = boolean("disableWAL", False)
    table_name: str = text("tableName", "hosts")
    update_interval: float = duration("updateInterval", 5.0)


class SQLiteNameResolver(NameResolver):
    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = self.settings = parse(SQLiteNameResolverMetadata, metadata, NAMERESOLUTION)
        self.table = table_name(settings.table_name, metadata.where)
        self.update_interval = settings.update_interval
        if self.update_interval <= 0:
            raise SpecError(f"{metadata.where}: metadata 'updateInterval' must be positive")
        connection = SQLiteSettings(settings.connection_string, settings.busy_timeout, settings.disable_wal)
        self._db = SQLiteDatabase(connection, name)
        self._registration = ""
        self._heartbeat: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()
        self._opened = False

    async def _open(self) -> None:
        """Open the file on first use: a sidecar that neither serves an app nor invokes one never touches it."""
        async with self._opening:
            if self._opened:
                return
            t = self.table
            await self._db.open(
                f"CREATE TABLE IF NOT EXISTS {t} (registration_id TEXT PRIMARY KEY, address TEXT NOT NULL UNIQUE, "
                "app_id TEXT NOT NULL, namespace TEXT NOT NULL, last_update REAL NOT NULL)",
                f"CREATE INDEX IF NOT EXISTS {t}_app_id ON {t} (app_id, namespace)",
            )
            self._opened = True

    async def init(self) -> None:
        instance = self.instance
        if instance is None or not instance.port or not instance.app_id:
            return
        await self._open()
        self._registration = str(uuid.uuid4())
        await self._db.run(self._register)
        log.info("registered %s at %s in %s", instance.app_id, instance.address, self.name)
        self._heartbeat = every(self.update_interval / 3, self._renew, f"{self.name}-heartbeat")

    def _register(self, connection: sqlite3.Connection) -> None:
        with write(connection):
            self._insert(connection, time.time())

    def _insert(self, connection: sqlite3.Connection, now: float) -> None:
        """Take the address over (``address`` is unique): a dead sidecar may have left it behind."""
        assert self.instance is not None
        instance = self.instance
        connection.execute(
            f"REPLACE INTO {self.table} (registration_id, address, app_id, namespace, last_update) "
            "VALUES (?, ?, ?, ?, ?)",
            (self._registration, instance.address, instance.app_id, default_namespace(instance.namespace), now),
        )

    async def _renew(self) -> None:
        if await self._db.run(self._renew_row):
            return
        log.warning("%s: this sidecar's address was registered by another one; no longer advertised", self.name)
        self._registration = ""
        if self._heartbeat is not None:
            self._heartbeat.cancel()  # this very task: it ends at its next sleep

    def _renew_row(self, connection: sqlite3.Connection) -> bool:
        assert self.instance is not None
        now = time.time()
        with write(connection):
            updated = connection.execute(
                f"UPDATE {self.table} SET last_update = ? WHERE registration_id = ?", (now, self._registration)
            ).rowcount
            if not updated:
                taken = connection.execute(
                    f"SELECT 1 FROM {self.table} WHERE address = ? AND last_update >= ?",
                    (self.instance.address, now - self.update_interval),
                ).fetchone()
                if taken:
                    return False
                self._insert(connection, now)
            connection.execute(f"DELETE FROM {self.table} WHERE last_update < ?", (now - self.update_interval,))
        return True

    async def resolve(self, request: ResolveRequest) -> list[str]:
        await self._open()
        addresses = await self._db.run(self._lookup, request.app_id, default_namespace(request.namespace))
        if not addresses:
            raise NoHost()
        return addresses

    def _lookup(self, connection: sqlite3.Connection, app_id: str, namespace: str) -> list[str]:
        rows = connection.execute(
            f"SELECT address FROM {self.table} WHERE app_id = ? AND namespace = ? AND last_update >= ? "
            "ORDER BY address",
            (app_id, namespace, time.time() - self.update_interval),
        ).fetchall()
        return [str(row[0]) for row in rows]

    async def close(self) -> None:
        await stop(self._heartbeat)
        self._heartbeat = None
        if self._registration:
            registration, self._registration = self._registration, ""
            try:
                await self._db.run(
                    lambda c: c.execute(f"DELETE FROM {self.table} WHERE registration_id = ?", (registration,))
                )
            except Exception as exc:
                log.warning("%s: deregistering failed: %s", self.name, exc)
        await self._db.close()
