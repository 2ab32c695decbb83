"""What the PostgreSQL components share: an asyncpg pool from Dapr's metadata, and error translation.

Metadata: ``connectionString`` (required; libpq ``key=value`` pairs or a ``postgres://`` URL, read exactly
as ``state.postgresql`` reads it), ``tableName`` (per component; may be ``schema.table``), ``timeout`` or
its older name ``timeoutInSeconds`` (20s, Dapr's default: bounds connecting, waiting for a pooled connection
and every statement; libpq's ``connect_timeout`` in the connection string bounds connecting alone),
``maxConns`` (max(4, CPUs)).

A backend that stops answering fails a call after ``timeout`` with a message saying so (asyncpg's own
timeout error has no text).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from building_blocks._common.metadata import duration, integer, text
from building_blocks.errors import ComponentError, SpecError

__all__ = (
    "DRIVER_ERRORS",
    "ConnectArgs",
    "PostgreSQLPool",
    "PostgreSQLSettings",
    "parse_connection_string",
    "table_name",
)

DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_LIBPQ_PAIR = re.compile(r"\s*(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)+)\s*")


@dataclass(frozen=True, slots=True)
class ConnectArgs:
    """asyncpg connect arguments; ``dsn`` is a URL, or carries the libpq options beyond the basic ones."""

    dsn: str | None = None
    host: str | list[str] | None = None
    port: int | list[int] | None = None
    user: str | None = None
    password: str | None = None
    database: str | None = None
    timeout: float | None = None

    def _arguments(self, timeout: float) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "timeout": self.timeout or timeout,
            "command_timeout": timeout,
        }

    def address(self) -> str:
        """Where the server is, for messages (never the password)."""
        if self.host is None:
            url = urllib.parse.urlsplit(self.dsn or "")
            return url.netloc.rpartition("@")[2] or "the default host"
        hosts = self.host if isinstance(self.host, list) else [self.host]
        ports = self.port if isinstance(self.port, list) else [self.port or 5432] * len(hosts)
        return ",".join(f"{host}:{port}" for host, port in zip(hosts, ports, strict=False))

    async def create_pool(self, max_size: int, timeout: float) -> asyncpg.Pool:
        """A pool of at most ``max_size`` connections; ``timeout`` bounds connecting and every command."""
        pool: asyncpg.Pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=max_size, **self._arguments(timeout)
        )
        return pool

    async def connect(self, timeout: float, **options: Any) -> asyncpg.Connection:
        """One dedicated connection (e.g. for LISTEN)."""
        connection: asyncpg.Connection = await asyncpg.connect(self.dsn, **self._arguments(timeout), **options)
        return connection


def table_name(name: str, where: str) -> str:
    parts = name.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise SpecError(f"{where}: metadata 'tableName' must be 'table' or 'schema.table', got {name!r}")
    return ".".join(f'"{part.lower()}"' for part in parts)  # folded like an unquoted name


def parse_connection_string(text: str, where: str) -> ConnectArgs:
    """libpq ``key=value`` pairs or a URL as asyncpg connect arguments.

    Host, port, user, password and database become arguments; the other options (sslmode,
    sslrootcert, application_name...) go in a URL query, which asyncpg reads as libpq does.
    ``connect_timeout`` sets the connect timeout; pgx's ``pool_*`` options are ignored.
    """
    text = text.strip()
    basic: dict[str, str] = {}
    if text.startswith(("postgres://", "postgresql://")):
        url = urllib.parse.urlsplit(text)
        options = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        base = url._replace(query="").geturl()
    else:
        options = _libpq_pairs(text, where)
        basic = {k: options.pop(k) for k in ("host", "hostaddr", "port", "user", "password") if k in options}
        basic["database"] = options.pop("dbname", "") or options.pop("database", "")
        base = "postgresql://"
    options = {k: v for k, v in options.items() if not k.startswith("pool_")}
    hosts = basic.get("host") or basic.get("hostaddr") or ""
    try:
        timeout = float(options.pop("connect_timeout")) if "connect_timeout" in options else None
        ports = [int(p) for p in basic["port"].split(",")] if basic.get("port") else []
    except ValueError:
        raise SpecError(f"{where} has an invalid port or connect_timeout") from None
    dsn = base + "?" + urllib.parse.urlencode(options) if options else base
    return ConnectArgs(
        dsn=None if dsn == "postgresql://" else dsn,
        host=(hosts.split(",") if "," in hosts else hosts) or None,
        port=(ports if len(ports) > 1 else ports[0]) if ports else None,
        user=basic.get("user"),
        password=basic.get("password"),
        database=basic.get("database") or None,
        timeout=timeout,
    )


def _libpq_pairs(text: str, where: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LIBPQ_PAIR.match(text, position)
        if match is None:
            raise SpecError(f"{where} is neither a postgres:// URL nor libpq 'key=value' pairs")
        raw = match[2][1:-1] if match[2].startswith("'") else match[2]
        pairs[match[1].lower()] = re.sub(r"\\(.)", r"\1", raw)
        position = match.end()
    return pairs


@dataclass(frozen=True, slots=True)
class PostgreSQLSettings:
    """The connection settings every PostgreSQL component reads (``tableName`` is each component's)."""

    connection_string: str = text("connectionString", required=True)
    timeout: float = duration("timeout", 20.0, "timeoutInSeconds")
    max_conns: int | None = integer("maxConns", None)  # max(4, CPUs)


class PostgreSQLPool:
    """The pool of one component; ``table`` is its quoted table name (see ``table_name``)."""

    def __init__(self, settings: PostgreSQLSettings, name: str, table: str, where: str) -> None:
        self.name = name
        self._connect = parse_connection_string(settings.connection_string, f"{where}: metadata 'connectionString'")
        self.table = table
        self.timeout = settings.timeout
        self._max_conns = settings.max_conns if settings.max_conns is not None else max(4, os.cpu_count() or 1)
        if self.timeout <= 0:
            raise SpecError(f"{where}: metadata 'timeout' must be positive")
        if self._max_conns < 1:
            raise SpecError(f"{where}: metadata 'maxConns' must be at least 1")
        self._pool: asyncpg.Pool | None = None

    async def open(self, schema: str) -> None:
        """Connect, then run ``schema`` (``CREATE ... IF NOT EXISTS``) unless the table exists."""

        async def create(conn: asyncpg.pool.PoolConnectionProxy) -> None:
            # The advisory lock keeps two sidecars starting together from racing on CREATE TABLE.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"layotto:{self.table}")
            if await conn.fetchval("SELECT to_regclass($1) IS NULL", self.table):
                await conn.execute(schema)

        await self.open_with(create)

    async def open_with(self, prepare: Callable[[asyncpg.pool.PoolConnectionProxy], Awaitable[None]]) -> None:
        """Connect, then run ``prepare`` in a transaction (closed again when it fails)."""
        c = self._connect
        with self.errors("connecting"):
            self._pool = await c.create_pool(self._max_conns, self.timeout)
        try:
            async with self.connection("preparing the table") as conn, conn.transaction():
                await prepare(conn)
        except BaseException:
            await self.close()
            raise

    async def connect(self, **options: Any) -> asyncpg.Connection:
        """One connection outside the pool (e.g. for LISTEN), with the same settings."""
        return await self._connect.connect(self.timeout, **options)

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
        except TimeoutError as exc:
            where = self._connect.address()
            detail = f"timed out after {self.timeout:g}s waiting for PostgreSQL at {where} (timeout)"
            raise ComponentError(f"{self.name}: {action}: {detail}") from exc
        except DRIVER_ERRORS as exc:
            raise ComponentError(f"{self.name}: {action}: {str(exc) or type(exc).__name__}") from exc

    @contextlib.asynccontextmanager
    async def connection(self, action: str) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        if self._pool is None:
            raise ComponentError(f"{self.name}: not initialised")
        with self.errors(action):
            async with self._pool.acquire(timeout=self.timeout) as conn:
                yield conn
