"""``state.in-memory``: a process-local store, lost on restart.

Features: ETAG (random UUIDs), TRANSACTIONAL, TTL, QUERY_API (evaluated in Python).
Metadata: none.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from building_blocks._common.metadata import STATE, NoMetadata, parse
from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ETagMismatch
from building_blocks.state.base import (
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

__all__ = ("InMemoryStateStore",)


@dataclass(slots=True)
class _Item:
    value: bytes
    etag: str
    expires_at: float | None
    content_type: str | None


class InMemoryStateStore(StateStore):
    """Keeps items in a dict; expired items are dropped when read."""

    features = frozenset({Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY_API})

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        parse(NoMetadata, metadata, STATE)

    async def init(self) -> None:
        self._items: dict[str, _Item] = {}

    def _live(self, key: str, now: float) -> _Item | None:
        item = self._items.get(key)
        if item is not None and item.expires_at is not None and item.expires_at <= now:
            del self._items[key]
            return None
        return item

    async def get(self, request: GetRequest) -> GetResponse | None:
        item = self._live(request.key, time.time())
        if item is None:
            return None
        return GetResponse(item.value, item.etag, item.expires_at, item.content_type)

    def _check(self, key: str, etag: str | None, first_write: bool, now: float) -> None:
        item = self._live(key, now)
        if etag:
            if item is None or item.etag != etag:
                raise ETagMismatch()
        elif first_write and item is not None:
            raise ETagMismatch("first-write: the key already exists")

    def _apply(self, request: SetRequest | DeleteRequest, now: float) -> None:
        if isinstance(request, DeleteRequest):
            self._items.pop(request.key, None)
            return
        ttl = request.ttl
        expires_at = now + ttl if ttl is not None and ttl > 0 else None
        self._items[request.key] = _Item(request.value, uuid.uuid4().hex, expires_at, request.content_type)

    async def set(self, request: SetRequest) -> None:
        now = time.time()
        self._check(request.key, request.etag, request.first_write, now)
        self._apply(request, now)

    async def delete(self, request: DeleteRequest) -> None:
        now = time.time()
        self._check(request.key, request.etag, False, now)
        self._apply(request, now)

    async def transact(self, request: TransactionRequest) -> None:
        # Validate against the state as it will be when each operation runs, then apply all.
        now = time.time()
        staged: dict[str, bool] = {}
        for operation in request.operations:
            exists = staged.get(operation.key)
            if exists is None:
                self._check(operation.key, operation.etag, _first_write(operation), now)
            elif operation.etag or (_first_write(operation) and exists):
                raise ETagMismatch(f"etag of {operation.key} changed earlier in the transaction")
            staged[operation.key] = isinstance(operation, SetRequest)
        for operation in request.operations:
            self._apply(operation, now)

    async def query(self, request: QueryRequest) -> QueryResponse:
        # A snapshot is taken on the loop (a C-speed copy); filtering it is pure Python over every item, so
        # it runs on a thread, where the interpreter switches back to the loop every few milliseconds.
        snapshot = list(self._items.items())
        rows, token = await asyncio.to_thread(_select, request, snapshot, time.time())
        return QueryResponse([QueryResult(key, item.value, item.etag) for key, item in rows], token)


def _select(request: QueryRequest, items: list[tuple[str, _Item]], now: float) -> tuple[list[tuple[str, _Item]], str]:
    from building_blocks.state import query as q  # the query language is loaded by the first query

    prefix = request.key_prefix
    live = (
        ((key, item), item.value)
        for key, item in items
        if key.startswith(prefix) and (item.expires_at is None or item.expires_at > now)
    )
    return q.select(request.query, live)


def _first_write(operation: SetRequest | DeleteRequest) -> bool:
    return isinstance(operation, SetRequest) and operation.first_write
