"""The State building block: Dapr's state API rules in front of the loaded stores.

It resolves stores by name, validates requests as Dapr's runtime does (required keys, etag types,
options, TTL), prefixes keys (``keyPrefix``), and calls the stores through ``Block.operation``, so the HTTP
layer can report their failures with the operation's own Dapr code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter

from building_blocks._common.cooperative import map_items
from building_blocks.block import Block, ComponentCall, Entry
from building_blocks.errors import (
    FeatureNotSupported,
    InvalidOption,
    InvalidRequest,
    Operation,
    QueryTooComplex,
    TooManyOperations,
)
from building_blocks.state.base import (
    NO_METADATA,
    BulkGet,
    BulkGetItem,
    Concurrency,
    Consistency,
    DeleteItem,
    DeleteRequest,
    Feature,
    GetReply,
    GetRequest,
    GetResponse,
    QueryRequest,
    QueryResponse,
    QueryResult,
    SaveItem,
    SetRequest,
    StateStore,
    StateTransaction,
    TransactionRequest,
)

__all__ = ("StateBlock",)

_GO_INT = re.compile(r"[+-]?[0-9]+")
_INT64 = range(-(2**63), 2**63)
#: The TTLs Dapr's stores take (``state/utils.ParseTTL``): -1 (none) up to a 32-bit number of seconds.
_TTL = range(-1, 2**31)
_Entry = Entry[StateStore, None]


def _concurrency(value: str) -> Concurrency:
    if not value:
        return Concurrency.LAST_WRITE
    try:
        return Concurrency(value)
    except ValueError:
        raise InvalidOption(f"unrecognized concurrency model '{value}'") from None


def _consistency(value: str) -> Consistency:
    if not value:
        return Consistency.EVENTUAL
    try:
        return Consistency(value)
    except ValueError:
        raise InvalidOption(f"unrecognized consistency model '{value}'") from None


def _read_consistency(value: str) -> Consistency:
    """A read's consistency: Dapr's stores ignore the value on reads, so an unknown one means eventual."""
    return Consistency.STRONG if value == Consistency.STRONG else Consistency.EVENTUAL


def _ttl(metadata: Mapping[str, str]) -> int | None:
    """``ttlInSeconds`` as Dapr's stores parse it (Go's ``strconv.ParseInt``, then their range): a bad value is
    the store refusing the write (500), as in Dapr."""
    if not metadata:  # the common case, and a Mapping's get() on an empty one costs a KeyError
        return None
    raw = metadata.get("ttlInSeconds")
    if raw is None or raw == "":
        return None
    prefix = "incorrect value for metadata 'ttlInSeconds': "
    if not _GO_INT.fullmatch(raw):
        raise InvalidOption(f'{prefix}strconv.ParseInt: parsing "{raw}": invalid syntax')
    ttl = int(raw)
    if ttl not in _INT64:
        raise InvalidOption(f'{prefix}strconv.ParseInt: parsing "{raw}": value out of range')
    if ttl not in _TTL:
        raise InvalidOption(f"{prefix}must be -1 or greater")
    return ttl


class StateBlock(Block[StateStore, None]):
    """All loaded state stores, and the state API's operations on them."""

    kind = "state store"
    type_prefix = "state"
    component_base = StateStore
    prefixes_keys = True

    def check_store(self, name: str) -> None:
        """Raise as Dapr does, before the request body is read, when ``name`` is not a loaded store."""
        self.entry(name)

    @staticmethod
    def _key(entry: _Entry, key: str) -> str:
        return entry.prefixer.key(entry.component.name, key)

    def check_transactional(self, name: str) -> None:
        """Raise as Dapr does, before the body is read, when ``name`` does not do transactions."""
        if Feature.TRANSACTIONAL not in self.entry(name).component.features:
            raise FeatureNotSupported(name, "transactions")

    # -- the app's requests to the store's ------------------------------------------------------------------

    def _set_request(self, entry: _Entry, item: SaveItem) -> SetRequest:
        """The store's request for ``item``: a bad option or TTL is the store refusing it, as in Dapr."""
        return SetRequest(
            key=self._key(entry, item.key),
            value=item.value,
            etag=item.etag,
            metadata=item.metadata,
            concurrency=_concurrency(item.concurrency),
            consistency=_consistency(item.consistency),
            ttl=_ttl(item.metadata),
            content_type=item.content_type,
        )

    def _delete_request(self, entry: _Entry, item: DeleteItem) -> DeleteRequest:
        return DeleteRequest(
            self._key(entry, item.key),
            item.etag or None,
            item.metadata,
            _concurrency(item.concurrency),
            _consistency(item.consistency),
        )

    # -- the API ------------------------------------------------------------------------------------------

    async def get(
        self, name: str, key: str, consistency: str = "", metadata: Mapping[str, str] = NO_METADATA
    ) -> GetResponse | None:
        entry = self.entry(name)
        request = GetRequest(self._key(entry, key), metadata, _read_consistency(consistency))
        if self.layers:
            return await self.operation(Operation.STATE_GET, name, key, entry.component.get, request)
        try:  # the hot path: inline, under the one rule (Block.fail)
            return await entry.component.get(request)
        except Exception as exc:
            self.fail(Operation.STATE_GET, name, key, exc)

    def get_now(self, name: str, key: str, reply: GetReply, fallback: Callable[[], None]) -> bool:
        """``get(name, key)`` from the event loop's callbacks, when the store can make it so
        (``StateStore.get_now``) and every layer only watches (``Block.observers``, told once it is over):
        ``reply`` hears of what ``get`` returns or raises (the same error), or ``fallback`` is told to call
        ``get`` instead. ``False``: nothing was started, call ``get`` (which reports what is wrong)."""
        entry = self.entries.get(name)
        if entry is None or self.observers is None:
            return False
        try:
            request = GetRequest(self._key(entry, key), NO_METADATA, Consistency.EVENTUAL)
        except Exception:
            return False
        started = perf_counter()

        def got(outcome: GetResponse | Exception | None) -> None:
            failed = isinstance(outcome, Exception)
            self.observe(ComponentCall(self, Operation.STATE_GET, name, key), not failed, started)
            if isinstance(outcome, Exception):
                try:
                    self.fail(Operation.STATE_GET, name, key, outcome)
                except Exception as exc:
                    outcome = exc
            reply(outcome)

        return entry.component.get_now(request, got, fallback)

    async def save(self, name: str, items: Sequence[SaveItem]) -> None:
        """Save ``items``; several items are not atomic."""
        entry = self.entry(name)
        if not items:
            return
        await self.operation(Operation.STATE_SAVE, name, "", self._save, entry, items)

    async def _save(self, entry: _Entry, items: Sequence[SaveItem]) -> None:
        requests = await map_items(lambda item: self._set_request(entry, item), items)
        if len(requests) == 1:
            await entry.component.set(requests[0])
        else:
            await entry.component.bulk_set(requests)

    async def delete(self, name: str, item: DeleteItem) -> None:
        entry = self.entry(name)
        await self.operation(Operation.STATE_DELETE, name, item.key, self._delete, entry, item)

    async def _delete(self, entry: _Entry, item: DeleteItem) -> None:
        await entry.component.delete(self._delete_request(entry, item))

    async def bulk_get(self, name: str, request: BulkGet) -> list[BulkGetItem]:
        """One entry per key, in request order."""
        entry = self.entry(name)
        keys, metadata = request.keys, request.metadata
        requests = await map_items(lambda key: GetRequest(self._key(entry, key), metadata), keys)
        if not requests:
            return []
        items = await self.operation(Operation.STATE_BULK_GET, name, "", entry.component.bulk_get, requests)
        pairs = list(zip(keys, items, strict=True))  # the store's items carry prefixed keys: answer the caller's
        return await map_items(lambda pair: BulkGetItem(pair[0], pair[1].response, pair[1].error), pairs)

    async def transact(self, name: str, transaction: StateTransaction) -> None:
        self.check_transactional(name)
        entry = self.entry(name)
        operations = transaction.operations
        if not operations:
            return
        limit = entry.component.max_transaction_operations
        if limit and len(operations) > limit:
            raise TooManyOperations(name, len(operations), limit)
        await self.operation(Operation.STATE_TRANSACTION, name, "", self._transact, entry, transaction)

    async def _transact(self, entry: _Entry, transaction: StateTransaction) -> None:
        def request(item: SaveItem | DeleteItem) -> SetRequest | DeleteRequest:
            if isinstance(item, SaveItem):
                return self._set_request(entry, item)
            return self._delete_request(entry, item)

        requests = await map_items(request, transaction.operations)
        await entry.component.transact(TransactionRequest(requests, transaction.metadata))

    async def query(self, name: str, query: bytes, metadata: Mapping[str, str] = NO_METADATA) -> QueryResponse:
        """``query`` is the query's JSON text, the same on every front (Dapr's gRPC API carries it as text)."""
        entry = self.entry(name)
        if Feature.QUERY_API not in entry.component.features:
            raise FeatureNotSupported(name, "querying")
        return await self.operation(Operation.STATE_QUERY, name, "", self._query, entry, query, metadata)

    @staticmethod
    async def _query(entry: _Entry, body: bytes, metadata: Mapping[str, str]) -> QueryResponse:
        from building_blocks.state import query as q  # the query language is loaded by the first query

        try:
            parsed = q.parse_query(body)
        except QueryTooComplex:
            raise  # our own limit, not Dapr's: a client's mistake (400)
        except InvalidRequest as exc:  # Dapr reports a bad query as a failed query (ERR_STATE_QUERY)
            raise InvalidOption(str(exc)) from None
        response = await entry.component.query(QueryRequest(parsed, entry.prefixer.prefix, metadata))
        original = entry.prefixer.original
        results = await map_items(lambda r: QueryResult(original(r.key), r.value, r.etag), response.results)
        return QueryResponse(results, response.token, response.metadata)
