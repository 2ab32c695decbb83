"""``state.sqlite``: a file on this machine; the embedded default.

Features: ETAG (random UUIDs), TRANSACTIONAL, TTL, QUERY_API (evaluated in Python over live rows).
Metadata: ``connectionString`` (required: a path, ``~`` expanded, ``file:`` URI or ``:memory:``),
``tableName`` (``state``), ``busyTimeout`` (2s), ``disableWAL`` (false), ``cleanupInterval`` (1h; <= 0
disables purging expired rows, which are still invisible).

Several sidecar processes may share one file: every write checks etags inside ``BEGIN IMMEDIATE``, so
concurrency checks hold across processes (see ``building_blocks._common.sqlite`` for how calls avoid
blocking the event loop). The table layout is Dapr's (``key, value, is_binary, etag, expiration_time,
update_time``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from building_blocks._common.metadata import STATE, duration, group, parse, text
from building_blocks._common.sqlite import INLINE_ITEMS, SQLiteDatabase, SQLiteSettings, table_name, write
from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import BulkError, ComponentError, ETagMismatch
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
)

__all__ = ("SQLiteStateMetadata", "SQLiteStateStore")

SCAN_ROWS = 1000  # rows per step of a query's scan (~60 KB of JSON)
_ROW = "value, is_binary, etag, (julianday(expiration_time) - 2440587.5) * 86400.0"


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _encode(value: bytes) -> tuple[str, bool]:
    try:
        return value.decode(), False
    except UnicodeDecodeError:
        return base64.b64encode(value).decode(), True


def _decode(text: str, is_binary: int) -> bytes:
    return base64.b64decode(text) if is_binary else text.encode()


@dataclass(frozen=True, slots=True)
class SQLiteStateMetadata:
    connection: SQLiteSettings = field(metadata=group(SQLiteSettings))
    table_name: str = text("tableName", "state")
    cleanup_interval: float = duration("cleanupInterval", 3600.0)  # <= 0: no purge


class SQLiteStateStore(StateStore):
    """State in one SQLite table."""

    features = frozenset({Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY_API})

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(SQLiteStateMetadata, metadata, STATE)
        self._db = SQLiteDatabase(settings.connection, self.name)
        self._table = table_name(settings.table_name, metadata.where)
        self._cleanup_interval = settings.cleanup_interval
        self._cleanup: asyncio.Task[None] | None = None

    async def init(self) -> None:
        table = self._table
        await self._db.open(
            f"CREATE TABLE IF NOT EXISTS {table} (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL,"
            " is_binary BOOLEAN NOT NULL, etag TEXT NOT NULL, expiration_time TIMESTAMP DEFAULT NULL,"
            " update_time TIMESTAMP DEFAULT NULL)",
            f"CREATE INDEX IF NOT EXISTS {table}_expiration ON {table} (expiration_time)",
        )
        if self._cleanup_interval > 0:
            self._cleanup = asyncio.create_task(self._purge_periodically())

    async def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup
            self._cleanup = None
        await self._db.close()

    async def ping(self) -> None:
        await self._db.run(lambda connection: connection.execute("SELECT 1").fetchone())

    async def _purge_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            with contextlib.suppress(ComponentError):
                await self._db.run_in_worker(self._purge)

    def _purge(self, connection: sqlite3.Connection) -> None:
        connection.execute(
            f"DELETE FROM {self._table} WHERE expiration_time IS NOT NULL AND expiration_time <= ?",
            (_timestamp(time.time()),),
        )

    # -- synchronous operations (worker thread) -------------------------------------------------------

    def _select(self, connection: sqlite3.Connection, key: str, now: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = connection.execute(
            f"SELECT {_ROW} FROM {self._table} WHERE key = ? AND (expiration_time IS NULL OR expiration_time > ?)",
            (key, now),
        ).fetchone()
        return row

    def _get(self, connection: sqlite3.Connection, key: str) -> GetResponse | None:
        row = self._select(connection, key, _timestamp(time.time()))
        if row is None:
            return None
        value, is_binary, etag, expires_at = row
        return GetResponse(_decode(value, is_binary), etag, expires_at)

    def _bulk_get(self, connection: sqlite3.Connection, keys: Sequence[str]) -> list[BulkGetItem]:
        now = _timestamp(time.time())
        if len(keys) > INLINE_ITEMS:  # on the worker thread: one step per slice of keys (see ``_scan``)
            with contextlib.suppress(orjson.JSONEncodeError):  # a key orjson cannot encode: row by row
                return self._bulk_get_sliced(connection, keys, now)
        items = []
        for key in keys:
            row = self._select(connection, key, now)
            response = None if row is None else GetResponse(_decode(row[0], row[1]), row[2], row[3])
            items.append(BulkGetItem(key, response))
        return items

    def _bulk_get_sliced(self, connection: sqlite3.Connection, keys: Sequence[str], now: str) -> list[BulkGetItem]:
        found: dict[str, GetResponse] = {}
        for start in range(0, len(keys), SCAN_ROWS):
            (chunk,) = connection.execute(
                f"SELECT json_group_array(json_array(key, {_ROW})) FROM {self._table} WHERE key IN"
                " (SELECT value FROM json_each(?)) AND (expiration_time IS NULL OR expiration_time > ?)",
                (orjson.dumps(keys[start : start + SCAN_ROWS]).decode(), now),
            ).fetchone()
            for key, value, is_binary, etag, expires_at in orjson.loads(chunk):
                found[key] = GetResponse(_decode(value, is_binary), etag, expires_at)
        return [BulkGetItem(key, found.get(key)) for key in keys]

    def _current_etag(self, connection: sqlite3.Connection, key: str, now: str) -> str | None:
        row = connection.execute(
            f"SELECT etag FROM {self._table} WHERE key = ? AND (expiration_time IS NULL OR expiration_time > ?)",
            (key, now),
        ).fetchone()
        return None if row is None else str(row[0])

    def _apply(self, connection: sqlite3.Connection, request: SetRequest | DeleteRequest, now: float) -> None:
        if isinstance(request, DeleteRequest):
            connection.execute(f"DELETE FROM {self._table} WHERE key = ?", (request.key,))
            return
        text, is_binary = _encode(request.value)
        ttl = request.ttl
        expiration = _timestamp(now + ttl) if ttl is not None and ttl > 0 else None
        connection.execute(
            f"INSERT INTO {self._table} (key, value, is_binary, etag, expiration_time, update_time)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " is_binary = excluded.is_binary, etag = excluded.etag,"
            " expiration_time = excluded.expiration_time, update_time = excluded.update_time",
            (request.key, text, is_binary, uuid.uuid4().hex, expiration, _timestamp(now)),
        )

    def _transact(self, connection: sqlite3.Connection, operations: Sequence[SetRequest | DeleteRequest]) -> None:
        now = time.time()
        now_text = _timestamp(now)
        with write(connection):
            staged: dict[str, bool] = {}
            for operation in operations:
                first_write = isinstance(operation, SetRequest) and operation.first_write
                exists = staged.get(operation.key)
                if exists is None:
                    etag = self._current_etag(connection, operation.key, now_text)
                    if operation.etag:
                        if etag != operation.etag:
                            raise ETagMismatch()
                    elif first_write and etag is not None:
                        raise ETagMismatch("first-write: the key already exists")
                elif operation.etag or (first_write and exists):
                    raise ETagMismatch(f"etag of {operation.key} changed earlier in the transaction")
                staged[operation.key] = isinstance(operation, SetRequest)
            for operation in operations:
                self._apply(connection, operation, now)

    def _each(
        self, connection: sqlite3.Connection, operations: Sequence[SetRequest | DeleteRequest]
    ) -> BulkError | None:
        """Bulk save or delete in one write transaction (one commit, not one per item), each item checked and
        applied on its own: not atomic, as Dapr's bulk save. Returns the items whose etag did not match."""
        now = time.time()
        now_text = _timestamp(now)
        failures: list[tuple[str, Exception]] = []
        with write(connection):
            for operation in operations:
                etag = self._current_etag(connection, operation.key, now_text)
                first_write = isinstance(operation, SetRequest) and operation.first_write
                if (operation.etag and etag != operation.etag) or (not operation.etag and first_write and etag):
                    failures.append((operation.key, ETagMismatch()))
                    continue
                self._apply(connection, operation, now)
        return BulkError(failures) if failures else None

    def _query(self, connection: sqlite3.Connection, request: QueryRequest) -> tuple[list[tuple[str, str, str]], str]:
        """Scan, filter, sort and page on the worker thread: all of it takes time proportional to the rows."""
        from building_blocks.state import query as q  # the query language is loaded by the first query

        rows = self._scan(connection, request.key_prefix, _timestamp(time.time()))
        return q.select(request.query, (((key, text, etag), text) for key, text, etag in rows))

    def _scan(self, connection: sqlite3.Connection, prefix: str, now: str) -> Iterator[list[str]]:
        """The live text rows under ``prefix`` in key order, ``SCAN_ROWS`` rows per statement step.

        Row by row, the driver releases and takes back the GIL at every step; a thread that does that
        thousands of times a second starves the event loop's thread of it (CPython only forces a switch
        when none happened for 5 ms): a query over 50,000 rows held the loop up to 0.5 s. One JSON array
        per slice of rows makes one step per slice: the loop waits 17 ms at most, and the scan is no slower.
        """
        after = ""
        while True:
            (chunk,) = connection.execute(
                f"SELECT json_group_array(json_array(key, value, etag)) FROM (SELECT key, value, etag FROM"
                f" {self._table} WHERE NOT is_binary AND substr(key, 1, ?) = ? AND key > ?"
                " AND (expiration_time IS NULL OR expiration_time > ?) ORDER BY key LIMIT ?)",
                (len(prefix), prefix, after, now, SCAN_ROWS),
            ).fetchone()
            rows: list[list[str]] = orjson.loads(chunk)
            yield from rows
            if len(rows) < SCAN_ROWS:
                return
            after = rows[-1][0]

    # -- the contract --------------------------------------------------------------------------------

    async def get(self, request: GetRequest) -> GetResponse | None:
        return await self._db.run(self._get, request.key)

    async def bulk_get(self, requests: Sequence[GetRequest]) -> list[BulkGetItem]:
        return await self._db.run(self._bulk_get, [r.key for r in requests])

    async def set(self, request: SetRequest) -> None:
        await self._db.run(self._transact, (request,))

    async def delete(self, request: DeleteRequest) -> None:
        await self._db.run(self._transact, (request,))

    async def bulk_set(self, requests: Sequence[SetRequest]) -> None:
        if failed := await self._db.run(self._each, requests):
            raise failed

    async def bulk_delete(self, requests: Sequence[DeleteRequest]) -> None:
        if failed := await self._db.run(self._each, requests):
            raise failed

    async def transact(self, request: TransactionRequest) -> None:
        await self._db.run(self._transact, request.operations)

    async def query(self, request: QueryRequest) -> QueryResponse:
        rows, token = await self._db.run_in_worker(self._query, request)
        return QueryResponse([QueryResult(key, text.encode(), etag) for key, text, etag in rows], token)
