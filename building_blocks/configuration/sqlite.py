"""``configuration.sqlite``: items in a SQLite file on this machine; the embedded default.

Metadata: ``connectionString`` (required: a path, ``~`` expanded, ``file:`` URI or ``:memory:``), ``table``
(``configuration``), ``busyTimeout`` (2s), ``disableWAL`` (false), ``pollInterval`` (150ms: how often
subscriptions look for changes).

The table has the layout of Dapr's PostgreSQL configuration store: ``key`` (primary key), ``value``,
``version`` (text; saves assign the previous numeric version + 1), ``metadata`` (a JSON object, or NULL).
Anyone may write to it: this sidecar, other sidecar processes sharing the file, or any SQLite client.

Watching without a server: while there are subscriptions, the store reads ``PRAGMA data_version`` every
``pollInterval`` (one cheap call, no table read). It changes when another connection (any process) has
committed a write; only then are the watched rows read again and compared with the last ones seen, and
each changed key is published (``None`` for a deleted key). This sidecar's own writes wake the poller at
once. All SQLite calls run on one worker thread per store, so the event loop never waits on the file lock,
and the snapshot of watched rows is only ever touched by that thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from building_blocks._common.metadata import CONFIGURATION, duration, group, parse, text
from building_blocks._common.sqlite import SQLiteDatabase, SQLiteSettings, write
from building_blocks.component import ComponentContext, Metadata
from building_blocks.configuration.base import (
    ConfigurationItem,
    ConfigurationStore,
    DeleteRequest,
    GetRequest,
    SaveItem,
    SaveRequest,
    Subscription,
    next_version,
)
from building_blocks.errors import ComponentError, SpecError

__all__ = ("SQLiteConfigurationStore",)

log = logging.getLogger(__name__)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: A row as stored: (value, version, metadata JSON text or None).
_Row = tuple[str, str, str | None]


def _item(row: _Row) -> ConfigurationItem:
    value, version, metadata = row
    parsed: dict[str, str] = {}
    if metadata:
        try:
            decoded = orjson.loads(metadata)
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict):
            parsed = {str(k): v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in decoded.items()}
    return ConfigurationItem(str(value), str(version), parsed)


@dataclass(frozen=True, slots=True)
class SQLiteConfigurationMetadata:
    connection: SQLiteSettings = field(metadata=group(SQLiteSettings))
    table: str = text("table", "configuration")
    poll_interval: float = duration("pollInterval", 0.15)


class SQLiteConfigurationStore(ConfigurationStore):
    """Items in one SQLite table, watched by polling the file's change counter."""

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(SQLiteConfigurationMetadata, metadata, CONFIGURATION)
        self._db = SQLiteDatabase(settings.connection, self.name)
        self._table = settings.table
        if not _IDENTIFIER.match(self._table):
            raise SpecError(f"{metadata.where}: metadata 'table' must be a plain SQL identifier")
        self._poll_interval = settings.poll_interval
        if self._poll_interval <= 0:
            raise SpecError(f"{metadata.where}: metadata 'pollInterval' must be positive")
        # What the subscriptions watch (event loop side).
        self._all_keys = 0
        self._key_counts: collections.Counter[str] = collections.Counter()
        self._poller: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._local_write = False
        # What was last seen of the watched rows (worker thread side).
        self._snapshot: dict[str, _Row] = {}
        self._data_version: int | None = None

    async def init(self) -> None:
        await self._db.open(
            f"CREATE TABLE IF NOT EXISTS {self._table} (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL,"
            " version TEXT NOT NULL, metadata TEXT)"
        )

    async def close(self) -> None:
        await super().close()
        await self._stop_poller()
        await self._db.close()

    async def ping(self) -> None:
        await self._db.run(lambda connection: connection.execute("SELECT 1").fetchone())

    # -- synchronous operations (worker thread) -------------------------------------------------------

    def _rows(self, connection: sqlite3.Connection, keys: Iterable[str] | None) -> dict[str, _Row]:
        sql = f"SELECT key, value, version, metadata FROM {self._table}"
        if keys is None:
            cursor = connection.execute(sql)
        else:
            keys = list(keys)
            if not keys:
                return {}
            cursor = connection.execute(
                sql + " WHERE key IN (SELECT value FROM json_each(?))", (orjson.dumps(keys).decode(),)
            )
        return {key: (value, version, metadata) for key, value, version, metadata in cursor}

    def _save(self, connection: sqlite3.Connection, items: Sequence[SaveItem]) -> None:
        with write(connection):
            for item in items:
                row = connection.execute(f"SELECT version FROM {self._table} WHERE key = ?", (item.key,)).fetchone()
                connection.execute(
                    f"INSERT INTO {self._table} (key, value, version, metadata) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version,"
                    " metadata = excluded.metadata",
                    (
                        item.key,
                        item.value,
                        next_version(row[0] if row else None),
                        orjson.dumps(dict(item.metadata)).decode() if item.metadata else None,
                    ),
                )

    def _delete(self, connection: sqlite3.Connection, keys: Sequence[str]) -> None:
        connection.execute(
            f"DELETE FROM {self._table} WHERE key IN (SELECT value FROM json_each(?))",
            (orjson.dumps(list(keys)).decode(),),
        )

    def _baseline(
        self, connection: sqlite3.Connection, fresh: frozenset[str] | None, watched_before: frozenset[str]
    ) -> None:
        """Remember the current rows of keys that just came into scope (``None``: every key but those
        already watched), so only later changes are published; keys already watched keep their state."""
        rows = self._rows(connection, fresh)
        for key in fresh if fresh is not None else list(self._snapshot) + list(rows):
            if key in watched_before:
                continue
            if key in rows:
                self._snapshot[key] = rows[key]
            else:
                self._snapshot.pop(key, None)

    def _changes(
        self, connection: sqlite3.Connection, watch_all: bool, keys: frozenset[str], local_write: bool
    ) -> list[tuple[str, _Row | None]]:
        """The watched keys whose rows differ from the last seen, if anything was committed since."""
        (data_version,) = connection.execute("PRAGMA data_version").fetchone()
        if data_version == self._data_version and not local_write:
            return []
        self._data_version = data_version
        current = self._rows(connection, None if watch_all else keys)
        changes: list[tuple[str, _Row | None]] = [
            (key, row) for key, row in current.items() if self._snapshot.get(key) != row
        ]
        changes += [(key, None) for key in self._snapshot if key not in current and (watch_all or key in keys)]
        self._snapshot = current
        return changes

    # -- the contract --------------------------------------------------------------------------------

    async def get(self, request: GetRequest) -> dict[str, ConfigurationItem]:
        rows = await self._db.run(self._rows, request.keys or None)
        return {key: _item(row) for key, row in rows.items()}

    async def save(self, request: SaveRequest) -> None:
        await self._db.run(self._save, request.items)
        self._changed_here()

    async def delete(self, request: DeleteRequest) -> None:
        await self._db.run(self._delete, request.keys)
        self._changed_here()

    def _changed_here(self) -> None:
        """Our own commits don't move this connection's ``data_version``: wake the poller instead."""
        self._local_write = True
        self._wake.set()

    # -- watching --------------------------------------------------------------------------------------

    async def _watch(self, subscription: Subscription) -> None:
        watched_before = frozenset(self._key_counts)
        watching_all = self._all_keys > 0
        if subscription.all_keys:
            self._all_keys += 1
        else:
            self._key_counts.update(subscription.keys)
        try:
            if subscription.all_keys and not watching_all:
                await self._db.run(self._baseline, None, watched_before)
            elif not watching_all:
                await self._db.run(self._baseline, subscription.keys - watched_before, watched_before)
        except BaseException:
            self._forget(subscription)
            raise
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name=f"{self.name}-watch")

    async def _unwatch(self, subscription: Subscription) -> None:
        self._forget(subscription)
        if not self.subscriptions:
            await self._stop_poller()

    def _forget(self, subscription: Subscription) -> None:
        if subscription.all_keys:
            self._all_keys -= 1
        else:
            self._key_counts.subtract(subscription.keys)
            self._key_counts = +self._key_counts  # drop the zeros

    async def _stop_poller(self) -> None:
        task, self._poller = self._poller, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            local_write, self._local_write = self._local_write, False
            try:
                changes = await self._db.run(
                    self._changes, self._all_keys > 0, frozenset(self._key_counts), local_write
                )
            except ComponentError as exc:
                log.warning("%s: looking for configuration changes: %s", self.name, exc)
                continue
            for key, row in changes:
                self._publish(key, None if row is None else _item(row))
