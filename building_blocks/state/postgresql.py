"""``state.postgresql`` (v1, v2): items in one PostgreSQL table, through an asyncpg pool.

Features: ETAG (the row's ``xmin``, as Dapr's v1 store), TRANSACTIONAL, TTL, QUERY_API (translated
to SQL over the ``jsonb`` value, with the semantics of ``building_blocks.state.query``).
Metadata: ``connectionString`` (required; libpq ``key=value`` pairs or a ``postgres://`` URL),
``tableName`` (``state``, may be ``schema.table``), ``timeout`` (20s), ``maxConns`` (max(4, CPUs)),
``cleanupInterval`` (1h; <= 0 disables the background deletion of expired rows).

The table is Dapr's v1 layout, so a Dapr sidecar and this one can share it: a JSON value is kept as
``jsonb`` (and read back as PostgreSQL prints it); any other value as a base64 JSON string with
``isbinary`` set. Expired rows are invisible until the cleanup task deletes them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from building_blocks._common.cooperative import SLICE, map_items
from building_blocks._common.metadata import STATE, duration, group, parse, text
from building_blocks._common.postgresql import PostgreSQLPool, PostgreSQLSettings, table_name
from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError, ETagInvalid, ETagMismatch
from building_blocks.state import query as q
from building_blocks.state.base import (
    BulkGetItem,
    DeleteRequest,
    Feature,
    GetRequest,
    GetResponse,
    QueryRequest,
    QueryResponse,
    QueryResult,
    SetRequest,
    StateStore,
    TransactionRequest,
    require_integer_etag,
)

__all__ = ("PostgreSQLStateMetadata", "PostgreSQLStateStore")

_log = logging.getLogger(__name__)

_ARRAY_INDEX = re.compile(r"\s*[+-]?\d+\s*")  # a path part ``#>`` would use as an array index
_MAX_XID = 0xFFFFFFFF

_LIVE = "(expiredate IS NULL OR expiredate > CURRENT_TIMESTAMP)"
_EXPIRY = "CURRENT_TIMESTAMP + $4::bigint * interval '1 second'"  # NULL when $4 is NULL
_COLUMNS = (
    "key, CASE WHEN isbinary THEN value #>> '{}' ELSE value::text END, isbinary, xmin::text, "
    "extract(epoch FROM expiredate)::float8"
)
_COMPARISONS = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}
_JSON_TYPE_RANK = (
    "CASE jsonb_typeof({0}) WHEN 'null' THEN 0 WHEN 'string' THEN 1 WHEN 'number' THEN 2 "
    "WHEN 'boolean' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 5 END"
)


class _SQL:
    """Every fixed statement, built once from the (quoted) table name."""

    def __init__(self, t: str) -> None:
        index = '"' + t.rsplit(".", 1)[-1].strip('"') + '_expiredate_idx"'
        self.create = (
            f"CREATE TABLE IF NOT EXISTS {t} (key text NOT NULL PRIMARY KEY, value jsonb NOT NULL, "
            "isbinary boolean NOT NULL, insertdate TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(), "
            "updatedate TIMESTAMP WITH TIME ZONE NULL, expiredate TIMESTAMP WITH TIME ZONE NULL); "
            f"CREATE INDEX IF NOT EXISTS {index} ON {t} (expiredate)"
        )
        self.get = f"SELECT {_COLUMNS} FROM {t} WHERE key = $1 AND {_LIVE}"
        self.bulk_get = f"SELECT {_COLUMNS} FROM {t} WHERE key = ANY($1::text[]) AND {_LIVE}"
        self.upsert = (
            f"INSERT INTO {t} AS cur (key, value, isbinary, expiredate) VALUES ($1, $2::jsonb, $3, {_EXPIRY}) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, isbinary = excluded.isbinary, "
            "expiredate = excluded.expiredate, updatedate = CURRENT_TIMESTAMP"
        )
        # First-write: only an expired row may be replaced.
        self.insert = self.upsert + " WHERE cur.expiredate <= CURRENT_TIMESTAMP"
        self.update = (
            f"UPDATE {t} SET value = $2::jsonb, isbinary = $3, expiredate = {_EXPIRY}, "
            f"updatedate = CURRENT_TIMESTAMP WHERE key = $1 AND xmin = $5::xid AND {_LIVE}"
        )
        self.delete = f"DELETE FROM {t} WHERE key = $1"
        self.delete_etag = f"DELETE FROM {t} WHERE key = $1 AND xmin = $2::xid AND {_LIVE}"
        self.delete_expired = f"DELETE FROM {t} WHERE expiredate <= CURRENT_TIMESTAMP"
        self.query = f"SELECT {_COLUMNS} FROM {t} WHERE NOT isbinary AND starts_with(key, $1) AND {_LIVE}"


@dataclass(frozen=True, slots=True)
class PostgreSQLStateMetadata:
    connection: PostgreSQLSettings = field(metadata=group(PostgreSQLSettings))
    table_name: str = text("tableName", "state")
    cleanup_interval: float = duration("cleanupInterval", 3600.0)  # <= 0: no cleanup


class PostgreSQLStateStore(StateStore):
    """One row per key in Dapr's v1 table layout; the etag is the row's ``xmin``."""

    features = frozenset({Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY_API})

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(PostgreSQLStateMetadata, metadata, STATE)
        table = table_name(settings.table_name, metadata.where)
        self._db = PostgreSQLPool(settings.connection, name, table, metadata.where)
        self._table = self._db.table
        self._sql = _SQL(self._table)
        self._cleanup_interval = settings.cleanup_interval
        self._cleanup: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def init(self) -> None:
        await self._db.open(self._sql.create)
        if self._cleanup_interval > 0:
            self._cleanup = asyncio.create_task(self._cleanup_loop(), name=f"{self.name}-cleanup")

    async def close(self) -> None:
        task, self._cleanup = self._cleanup, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._db.close()

    async def ping(self) -> None:
        async with self._db.connection("ping") as conn:
            await conn.fetchval("SELECT 1")

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                async with self._db.connection("deleting expired rows") as conn:
                    await conn.execute(self._sql.delete_expired)
            except ComponentError as exc:
                _log.warning("%s: %s", self.name, exc)

    # -- items -------------------------------------------------------------------------------------

    async def get(self, request: GetRequest) -> GetResponse | None:
        async with self._db.connection("get") as conn:
            row = await conn.fetchrow(self._sql.get, request.key)
        return None if row is None else _response(row)

    async def bulk_get(self, requests: Sequence[GetRequest]) -> list[BulkGetItem]:
        keys = [r.key for r in requests]
        distinct = list(set(keys))
        found: dict[str, GetResponse] = {}
        for start in range(0, len(distinct), SLICE):  # one query per slice: the loop serves others between
            async with self._db.connection("bulk get") as conn:
                rows = await conn.fetch(self._sql.bulk_get, distinct[start : start + SLICE])
            found.update((row[0], _response(row)) for row in rows)
        return await map_items(lambda key: BulkGetItem(key, found.get(key)), keys)

    async def set(self, request: SetRequest) -> None:
        etag = _xid(request.etag)
        async with self._db.connection("set") as conn:
            await self._write(conn, request, etag, request.first_write)

    async def delete(self, request: DeleteRequest) -> None:
        etag = _xid(request.etag)
        async with self._db.connection("delete") as conn:
            await self._write(conn, request, etag, False)

    async def transact(self, request: TransactionRequest) -> None:
        # The first operation on a key checks the stored row; later ones check what the transaction
        # staged (their etag is necessarily stale: the row's xmin is now this transaction's id).
        staged: dict[str, bool] = {}
        plan: list[tuple[SetRequest | DeleteRequest, int | None, bool]] = []
        for operation in request.operations:
            first_write = isinstance(operation, SetRequest) and operation.first_write
            exists = staged.get(operation.key)
            if exists is None:
                plan.append((operation, _xid(operation.etag), first_write))
            elif operation.etag or (first_write and exists):
                raise ETagMismatch(f"etag of {operation.key} changed earlier in the transaction")
            else:
                plan.append((operation, None, False))
            staged[operation.key] = isinstance(operation, SetRequest)
        async with self._db.connection("transaction") as conn, conn.transaction():
            for operation, etag, first_write in plan:
                await self._write(conn, operation, etag, first_write)

    async def _write(
        self,
        conn: asyncpg.pool.PoolConnectionProxy,
        request: SetRequest | DeleteRequest,
        etag: int | None,
        first_write: bool,
    ) -> None:
        """One statement; raises ``ETagMismatch`` when its concurrency condition matched no row."""
        sql = self._sql
        if isinstance(request, DeleteRequest):
            if etag is None:
                await conn.execute(sql.delete, request.key)
                return
            status = await conn.execute(sql.delete_etag, request.key, etag)
        else:
            value, binary = _encode(request.value)
            ttl = request.ttl if request.ttl is not None and request.ttl > 0 else None
            if etag is not None:
                status = await conn.execute(sql.update, request.key, value, binary, ttl, etag)
            elif first_write:
                status = await conn.execute(sql.insert, request.key, value, binary, ttl)
            else:
                await conn.execute(sql.upsert, request.key, value, binary, ttl)
                return
        if status.rsplit(" ", 1)[-1] == "0":
            raise ETagMismatch() if etag is not None else ETagMismatch("first-write: the key already exists")

    # -- query -------------------------------------------------------------------------------------

    async def query(self, request: QueryRequest) -> QueryResponse:
        parsed: q.Query = request.query
        sql, params = _translate(self._sql.query, parsed, request.key_prefix)
        async with self._db.connection("query") as conn:
            rows = await conn.fetch(sql, *params)
        token = ""
        if 0 < parsed.limit < len(rows):
            rows, token = rows[: parsed.limit], str(parsed.offset + parsed.limit)
        return QueryResponse([QueryResult(row[0], _response(row).value, row[3]) for row in rows], token)


# -- SQL translation of queries -------------------------------------------------------------------


class _Params:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def bind(self, value: Any, cast: str) -> str:
        self.values.append(value)
        return f"${len(self.values)}::{cast}"

    def json(self, value: Any) -> str:
        return self.bind(orjson.dumps(value).decode(), "jsonb")

    def path(self, path: tuple[str, ...]) -> str:
        """The value at ``path`` (SQL NULL when missing). Only objects are walked, as in query.py."""
        found = f"value #> {self.bind(list(path), 'text[]')}"
        guards = [
            f"jsonb_typeof(value #> {self.bind(list(path[:i]), 'text[]')}) = 'object'"
            for i, part in enumerate(path)
            if _ARRAY_INDEX.fullmatch(part)
        ]
        return f"(CASE WHEN {' AND '.join(guards)} THEN {found} END)" if guards else f"({found})"


def _translate(base: str, parsed: q.Query, key_prefix: str) -> tuple[str, list[Any]]:
    params = _Params()
    params.values.append(key_prefix)
    sql = base
    if parsed.filter is not None:
        sql += " AND " + _filter(parsed.filter, params)
    order = []
    for key in parsed.sort:
        found = params.path(key.path)
        direction = "DESC" if key.descending else "ASC"
        order += [
            f"{_JSON_TYPE_RANK.format(found)} {direction}",  # NULL (missing): last ASC, first DESC
            f"(CASE WHEN jsonb_typeof({found}) = 'string' THEN {found} #>> '{{}}' END) COLLATE \"C\" {direction}",
            f"{found} {direction}",
        ]
    sql += " ORDER BY " + ", ".join([*order, "key"])
    limit = parsed.limit + 1 if parsed.limit > 0 else None
    sql += f" LIMIT {params.bind(limit, 'bigint')} OFFSET {params.bind(parsed.offset, 'bigint')}"
    return sql, params.values


def _filter(node: q.Filter, params: _Params) -> str:
    if isinstance(node, q.Junction):
        return "(" + f" {node.op} ".join(_filter(item, params) for item in node.items) + ")"
    wanted = node.value
    if node.op in _COMPARISONS and (not isinstance(wanted, str | int | float) or isinstance(wanted, bool)):
        return "FALSE"  # only two numbers or two strings are ordered
    found = params.path(node.path)
    if node.op == "EQ":
        return f"{found} = {params.json(wanted)}"
    if node.op == "NEQ":
        return f"{found} <> {params.json(wanted)}"
    if node.op == "IN":
        return f"{found} = ANY({params.bind([orjson.dumps(v).decode() for v in wanted], 'jsonb[]')})"
    operator = _COMPARISONS[node.op]
    if isinstance(wanted, str):  # codepoint order, whatever the database collation
        text = f"({found} #>> '{{}}') COLLATE \"C\""
        return f"(jsonb_typeof({found}) = 'string' AND {text} {operator} {params.bind(wanted, 'text')})"
    return f"(jsonb_typeof({found}) = 'number' AND {found} {operator} {params.json(wanted)})"


# -- values, etags, metadata ------------------------------------------------------------------------


def _encode(value: bytes) -> tuple[str, bool]:
    """The jsonb text to store and whether it is base64 of a non-JSON value."""
    if b"\\u0000" not in value:  # valid JSON that jsonb rejects
        try:
            orjson.loads(value)
        except orjson.JSONDecodeError:
            pass
        else:
            return value.decode(), False
    return '"' + base64.b64encode(value).decode() + '"', True


def _response(row: asyncpg.Record) -> GetResponse:
    _, value, binary, etag, expires_at = row
    data = base64.b64decode(value) if binary else value.encode()
    return GetResponse(data, etag, expires_at)


def _xid(etag: str | None) -> int | None:
    if not etag:
        return None
    number = require_integer_etag(etag)
    if not 0 <= number <= _MAX_XID:
        raise ETagInvalid(f"etag {etag!r} is not a PostgreSQL transaction id")
    return number
