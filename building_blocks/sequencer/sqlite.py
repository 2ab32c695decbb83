"""``sequencer.sqlite``: one counter row per key in a SQLite file; the embedded default.

Metadata: the connection settings of ``building_blocks._common.sqlite`` (``connectionString`` required,
``busyTimeout``, ``disableWAL``), ``tableName`` (``sequencer``), and the block-level settings.

Each id or segment is one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` inside ``BEGIN IMMEDIATE``,
so several sidecar processes sharing the file never get the same id, and ids survive restarts.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from building_blocks._common.metadata import SEQUENCER, group, parse, text
from building_blocks._common.sqlite import SQLiteDatabase, SQLiteSettings, table_name, write
from building_blocks.component import ComponentContext, Metadata
from building_blocks.sequencer.base import MAX_ID, CounterSequencer, exhausted

__all__ = ("SQLiteSequencer",)


@dataclass(frozen=True, slots=True)
class SQLiteSequencerMetadata:
    connection: SQLiteSettings = field(metadata=group(SQLiteSettings))
    table_name: str = text("tableName", "sequencer")


class SQLiteSequencer(CounterSequencer):
    """Rows ``key, value``: ``value`` is the last id given for ``key``."""

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(SQLiteSequencerMetadata, metadata, SEQUENCER)
        self._db = SQLiteDatabase(settings.connection, self.name)
        t = self._table = table_name(settings.table_name, metadata.where)
        # No row comes back when the addition would overflow: SQLite would silently turn it into a REAL.
        self._add = (
            f"INSERT INTO {t} (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE"
            f" SET value = {t}.value + ?2 WHERE {t}.value <= {MAX_ID} - ?2 RETURNING value"
        )
        self._raise = (
            f"INSERT INTO {t} (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
            f" SET value = max({t}.value, excluded.value)"
        )

    async def init(self) -> None:
        await self._db.open(
            f"CREATE TABLE IF NOT EXISTS {self._table} (key TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL)"
        )
        await self.apply_floors()

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        await self._db.run(lambda connection: connection.execute("SELECT 1").fetchone())

    def _added(self, connection: sqlite3.Connection, key: str, amount: int) -> int | None:
        with write(connection):
            row = connection.execute(self._add, (key, amount)).fetchone()
        return None if row is None else int(row[0])

    def _raised(self, connection: sqlite3.Connection, key: str, floor: int) -> None:
        with write(connection):
            connection.execute(self._raise, (key, floor))

    async def add(self, key: str, amount: int) -> int:
        value = await self._db.run(self._added, key, amount)
        if value is None:
            raise exhausted(key)
        return value

    async def raise_to(self, key: str, floor: int) -> None:
        await self._db.run(self._raised, key, floor)
