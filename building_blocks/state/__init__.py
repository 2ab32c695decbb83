"""State building block: the contract; components live in their own modules."""

from building_blocks.state.base import (
    BulkGetItem,
    Concurrency,
    Consistency,
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

__all__ = (
    "BulkGetItem",
    "Concurrency",
    "Consistency",
    "DeleteRequest",
    "Feature",
    "GetRequest",
    "GetResponse",
    "QueryRequest",
    "QueryResponse",
    "QueryResult",
    "SetRequest",
    "StateStore",
    "TransactionRequest",
)
