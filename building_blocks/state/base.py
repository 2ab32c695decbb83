"""The State block's contract: requests, responses, features and the ``StateStore`` base class.

Keys reaching a store are already prefixed (``appid||key``); values are the exact bytes to keep
(JSON text when they come from the HTTP API). Every store keeps, per key: value, etag, expiry.

Concurrency rules every store follows (Dapr's in-memory reference semantics):
* an etag given (non-empty) must equal the stored item's etag; a missing/expired item is a mismatch;
* ``first-write`` without an etag fails if the item exists;
* otherwise a write is an unconditional upsert, and every successful write gets a fresh etag;
* a write without a TTL clears any previous TTL; ``ttl <= 0`` means "no expiry".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from building_blocks.component import Component
from building_blocks.empty import NO_METADATA  # re-exported: the blocks and components import it from here
from building_blocks.errors import BulkError, ETagInvalid, FeatureNotSupported

__all__ = (
    "NO_METADATA",
    "BulkGet",
    "BulkGetItem",
    "Concurrency",
    "Consistency",
    "DeleteItem",
    "DeleteRequest",
    "Feature",
    "GetRequest",
    "GetResponse",
    "QueryRequest",
    "QueryResponse",
    "QueryResult",
    "SaveItem",
    "SetRequest",
    "StateStore",
    "StateTransaction",
    "TransactionRequest",
    "expired",
    "require_integer_etag",
)


class Feature(StrEnum):
    """Optional capabilities a store claims; shown by the metadata API as ``capabilities``."""

    ETAG = "ETAG"
    TRANSACTIONAL = "TRANSACTIONAL"
    TTL = "TTL"
    QUERY_API = "QUERY_API"


class Concurrency(StrEnum):
    FIRST_WRITE = "first-write"
    LAST_WRITE = "last-write"


class Consistency(StrEnum):
    EVENTUAL = "eventual"
    STRONG = "strong"


@dataclass(frozen=True, slots=True)
class GetRequest:
    key: str
    metadata: Mapping[str, str] = NO_METADATA
    consistency: Consistency = Consistency.EVENTUAL


@dataclass(frozen=True, slots=True)
class GetResponse:
    """A stored item. ``expires_at`` is a UNIX timestamp, or None when the item has no TTL."""

    value: bytes
    etag: str | None = None
    expires_at: float | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class SetRequest:
    """Upsert ``value`` under ``key``. ``ttl`` in seconds: None = none given, <= 0 = no expiry."""

    key: str
    value: bytes
    etag: str | None = None
    metadata: Mapping[str, str] = NO_METADATA
    concurrency: Concurrency = Concurrency.LAST_WRITE
    consistency: Consistency = Consistency.EVENTUAL
    ttl: int | None = None
    content_type: str | None = None

    @property
    def first_write(self) -> bool:
        return self.concurrency is Concurrency.FIRST_WRITE


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    key: str
    etag: str | None = None
    metadata: Mapping[str, str] = NO_METADATA
    concurrency: Concurrency = Concurrency.LAST_WRITE
    consistency: Consistency = Consistency.EVENTUAL


@dataclass(frozen=True, slots=True)
class BulkGetItem:
    """One entry of a bulk get, in request order: ``response`` None when missing, ``error`` on failure."""

    key: str
    response: GetResponse | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class TransactionRequest:
    """Operations applied in order, all or nothing; etags are all checked before anything is written."""

    operations: Sequence[SetRequest | DeleteRequest]
    metadata: Mapping[str, str] = NO_METADATA


# -- the block's API: requests as the app sent them (keys not yet prefixed, options not yet checked) -------


@dataclass(frozen=True, slots=True)
class SaveItem:
    """One item of a save (or a transaction's upsert). ``value`` is the bytes to keep (JSON text from the
    HTTP API); ``concurrency``/``consistency`` are the app's words, which the store judges (an unknown one is
    the store refusing the write, as in Dapr)."""

    key: str
    value: bytes
    etag: str | None = None
    metadata: Mapping[str, str] = NO_METADATA
    concurrency: str = ""
    consistency: str = ""
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteItem:
    """One delete (or a transaction's delete), as ``SaveItem`` without a value."""

    key: str
    etag: str | None = None
    metadata: Mapping[str, str] = NO_METADATA
    concurrency: str = ""
    consistency: str = ""


@dataclass(frozen=True, slots=True)
class BulkGet:
    """The keys to read, answered in this order."""

    keys: Sequence[str]
    metadata: Mapping[str, str] = NO_METADATA


@dataclass(frozen=True, slots=True)
class StateTransaction:
    """Upserts and deletes applied in order, all or nothing."""

    operations: Sequence[SaveItem | DeleteItem]
    metadata: Mapping[str, str] = NO_METADATA


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """A parsed query (see ``building_blocks.state.query``) restricted to keys starting ``key_prefix``."""

    query: Any
    key_prefix: str = ""
    metadata: Mapping[str, str] = NO_METADATA


@dataclass(frozen=True, slots=True)
class QueryResult:
    key: str
    value: bytes
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class QueryResponse:
    results: Sequence[QueryResult]
    token: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


#: Hears of a ``StateStore.get_now``: the item (None: missing), or the error ``get`` raises.
GetReply = Callable[[GetResponse | Exception | None], None]


class StateStore(Component):
    """Base class of state stores.

    Subclasses implement ``get``, ``set`` and ``delete``, and declare ``features``. The bulk methods
    default to concurrent single operations; ``transact`` and ``query`` raise ``FeatureNotSupported``
    unless the store overrides them and claims ``TRANSACTIONAL`` / ``QUERY_API``.

    Errors: ``ETagMismatch``, ``ETagInvalid``, ``ComponentError`` for backend failures.
    """

    features: frozenset[Feature] = frozenset()
    #: Largest transaction accepted; 0 = unbounded.
    max_transaction_operations: int = 0

    async def get(self, request: GetRequest) -> GetResponse | None:
        """The item, or None when missing or expired."""
        raise NotImplementedError

    def get_now(self, request: GetRequest, reply: GetReply, fallback: Callable[[], None]) -> bool:
        """``get`` from the event loop's callbacks, without a task, for a store that can make it so:
        ``reply`` hears of what ``get`` returns or raises, or ``fallback`` is told to call ``get`` instead
        (nothing having changed). ``False`` (the default): nothing was started, call ``get``."""
        return False

    async def set(self, request: SetRequest) -> None:
        raise NotImplementedError

    async def delete(self, request: DeleteRequest) -> None:
        """Deleting a missing item without an etag succeeds."""
        raise NotImplementedError

    async def bulk_get(self, requests: Sequence[GetRequest]) -> list[BulkGetItem]:
        """One entry per request, in request order; a failure of one key is reported in its entry."""
        outcomes = await _windowed(requests, self.get)
        items = []
        for request, outcome in zip(requests, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                items.append(BulkGetItem(request.key, error=str(outcome)))
            else:
                items.append(BulkGetItem(request.key, outcome))
        return items

    async def bulk_set(self, requests: Sequence[SetRequest]) -> None:
        """Not atomic: applies what it can, then raises ``BulkError`` listing the failed keys."""
        await _each(requests, self.set)

    async def bulk_delete(self, requests: Sequence[DeleteRequest]) -> None:
        """Not atomic: applies what it can, then raises ``BulkError`` listing the failed keys."""
        await _each(requests, self.delete)

    async def transact(self, request: TransactionRequest) -> None:
        raise FeatureNotSupported(self.name, "transactions")

    async def query(self, request: QueryRequest) -> QueryResponse:
        raise FeatureNotSupported(self.name, "querying")


#: Calls of a bulk operation in flight at once. All of a 4 MiB body's ~100,000 at once made as many tasks
#: at one go (seconds of the loop) and queued them all on the component's connection pool, where they
#: timed out; a window keeps both bounded, and every window awaits the backend, so the loop serves others.
WINDOW = 100


async def _windowed(requests: Sequence[Any], operation: Any) -> list[Any]:
    """``operation(request)`` for each request, ``WINDOW`` at a time; exceptions are returned, in order."""
    if len(requests) <= WINDOW:
        return await asyncio.gather(*(operation(r) for r in requests), return_exceptions=True)
    outcomes: list[Any] = []
    for start in range(0, len(requests), WINDOW):
        window = requests[start : start + WINDOW]
        outcomes += await asyncio.gather(*(operation(r) for r in window), return_exceptions=True)
    return outcomes


async def _each(requests: Sequence[Any], operation: Any) -> None:
    if len(requests) == 1:
        await operation(requests[0])
        return
    outcomes = await _windowed(requests, operation)
    failures: list[tuple[str, Exception]] = []
    for request, outcome in zip(requests, outcomes, strict=True):
        if isinstance(outcome, Exception):
            failures.append((request.key, outcome))
        elif isinstance(outcome, BaseException):
            raise outcome
    if failures:
        raise BulkError(failures)


def expired(expires_at: float | None, now: float) -> bool:
    return expires_at is not None and expires_at <= now


def require_integer_etag(etag: str) -> int:
    """Stores with numeric versions call this: a non-integer etag can never match."""
    try:
        return int(etag)
    except ValueError:
        raise ETagInvalid(f"etag {etag!r} is not an integer") from None
