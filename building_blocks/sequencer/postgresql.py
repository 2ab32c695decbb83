"""``sequencer.postgresql``: one counter row per key, ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``.

Each id or segment is one statement: the row lock serialises concurrent callers on every sidecar, and the
counter is durable, so ids are unique across sidecars, machines and restarts.

Metadata: the connection settings of ``building_blocks._common.postgresql`` (``connectionString``
required, ``timeout``, ``maxConns``), ``tableName`` (``layotto_sequencer``, may be ``schema.table``), and
the block-level settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from building_blocks._common.metadata import SEQUENCER, group, parse, text
from building_blocks._common.postgresql import PostgreSQLPool, PostgreSQLSettings, table_name
from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError
from building_blocks.sequencer.base import CounterSequencer, exhausted

__all__ = ("PostgreSQLSequencer",)

_OUT_OF_RANGE = "22003"  # numeric_value_out_of_range: the bigint would overflow


@dataclass(frozen=True, slots=True)
class PostgreSQLSequencerMetadata:
    connection: PostgreSQLSettings = field(metadata=group(PostgreSQLSettings))
    table_name: str = text("tableName", "layotto_sequencer")


class PostgreSQLSequencer(CounterSequencer):
    """Rows ``key, value``: ``value`` is the last id given for ``key``."""

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(PostgreSQLSequencerMetadata, metadata, SEQUENCER)
        table = table_name(settings.table_name, metadata.where)
        self._pool = PostgreSQLPool(settings.connection, self.name, table, metadata.where)
        t = self._pool.table
        self._create = f"CREATE TABLE IF NOT EXISTS {t} (key text NOT NULL PRIMARY KEY, value bigint NOT NULL)"
        self._add = (
            f"INSERT INTO {t} AS cur (key, value) VALUES ($1, $2) "
            "ON CONFLICT (key) DO UPDATE SET value = cur.value + excluded.value RETURNING value"
        )
        self._raise = (
            f"INSERT INTO {t} AS cur (key, value) VALUES ($1, $2) "
            "ON CONFLICT (key) DO UPDATE SET value = GREATEST(cur.value, excluded.value)"
        )

    async def init(self) -> None:
        await self._pool.open(self._create)
        await self.apply_floors()

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        async with self._pool.connection("ping") as conn:
            await conn.fetchval("SELECT 1")

    async def add(self, key: str, amount: int) -> int:
        try:
            async with self._pool.connection("next id") as conn:
                value: int = await conn.fetchval(self._add, key, amount)
        except ComponentError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == _OUT_OF_RANGE:
                raise exhausted(key) from exc
            raise
        return value

    async def raise_to(self, key: str, floor: int) -> None:
        async with self._pool.connection("applying biggerThan") as conn:
            await conn.execute(self._raise, key, floor)
