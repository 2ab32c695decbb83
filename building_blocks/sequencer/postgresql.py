"""``sequencer.postgresql``: one counter row per key, ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``.

Each id or segment is one statement: the row lock serialises concurrent callers on every sidecar, and the
counter is durable, so ids are unique across sidecars, machines and restarts.

Metadata: the connection settings of ``building_blocks._common.postgresql`` (``connectionString``
required, ``timeout``, ``maxConns``), ``tableName`` (``layotto_sequencer``, may be ``schema.table``), and
the block-level settings.
"""

from __future__ import annotations

from typing import Any

from building_blocks._common.postgresql import PostgreSQLPool
from building_blocks.errors import ComponentError
from building_blocks.sequencer.base import CounterSequencer, exhausted

__all__ = ("PostgreSQLSequencer",)

_OUT_OF_RANGE = "22003"  # numeric_value_out_of_range: the bigint would overflow


class PostgreSQLSequencer(CounterSequencer):
    """Rows ``key, value``: ``value`` is the last id given for ``key``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool = PostgreSQLPool(self.metadata, self.name, "layotto_sequencer")
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
