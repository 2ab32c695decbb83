"""What the PostgreSQL components share: an asyncpg pool from Dapr's metadata, and error translation.

Metadata: ``connectionString`` (required; libpq ``key=value`` pairs or a ``postgres://`` URL, read exactly
as ``state.postgresql`` reads it), ``tableName`` (per component; may be ``schema.table``), ``timeout``
(20s), ``maxConns`` (max(4, CPUs)).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator

import asyncpg

from building_blocks.component import Metadata
from building_blocks.errors import ComponentError, SpecError

# One parser for every PostgreSQL component, so they all accept the same connection strings.
from building_blocks.state.postgresql import _parse_connection_string, _table_name

__all__ = ("DRIVER_ERRORS", "PostgreSQLPool")

DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


class PostgreSQLPool:
    """The pool of one component; ``table`` is its quoted ``tableName``."""

    def __init__(self, meta: Metadata, name: str, default_table: str) -> None:
        self.name = name
        self._connect = _parse_connection_string(
            meta.text("connectionString", required=True), f"{meta.where}: metadata 'connectionString'"
        )
        self.table = _table_name(meta.text("tableName", default_table), meta.where)
        self.timeout = meta.duration("timeout", 20.0)
        self._max_conns = meta.integer("maxConns", max(4, os.cpu_count() or 1))
        if self.timeout <= 0:
            raise SpecError(f"{meta.where}: metadata 'timeout' must be positive")
        if self._max_conns < 1:
            raise SpecError(f"{meta.where}: metadata 'maxConns' must be at least 1")
        self._pool: asyncpg.Pool | None = None

    async def open(self, schema: str) -> None:
        """Connect, then run ``schema`` (``CREATE ... IF NOT EXISTS``) unless the table exists."""
        c = self._connect
        with self.errors("connecting"):
            self._pool = await asyncpg.create_pool(
                c.dsn,
                min_size=1,
                max_size=self._max_conns,
                host=c.host,
                port=c.port,
                user=c.user,
                password=c.password,
                database=c.database,
                timeout=c.timeout or self.timeout,
                command_timeout=self.timeout,
            )
        try:
            # The advisory lock keeps two sidecars starting together from racing on CREATE TABLE.
            async with self.connection("creating the table") as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"layotto:{self.table}")
                if await conn.fetchval("SELECT to_regclass($1) IS NULL", self.table):
                    await conn.execute(schema)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except DRIVER_ERRORS:  # TimeoutError included
                pool.terminate()

    @contextlib.contextmanager
    def errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except DRIVER_ERRORS as exc:
            raise ComponentError(f"{self.name}: {action}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def connection(self, action: str) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        if self._pool is None:
            raise ComponentError(f"{self.name}: not initialised")
        with self.errors(action):
            async with self._pool.acquire(timeout=self.timeout) as conn:
                yield conn
