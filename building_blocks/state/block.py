"""The State building block: Dapr's state API rules in front of the loaded stores.

It resolves stores by name, validates requests as Dapr's runtime does (required keys, etag types,
options, TTL), prefixes keys (``keyPrefix``), and calls the stores through ``Block.operation``, so the HTTP
layer can report their failures with the operation's own Dapr code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from building_blocks import jsoncodec
from building_blocks._common.cooperative import map_items
from building_blocks.block import Block, Entry
from building_blocks.errors import (
    FeatureNotSupported,
    InvalidOption,
    InvalidRequest,
    Operation,
    QueryTooComplex,
    TooManyOperations,
    UnsupportedOperation,
)
from building_blocks.jsoncodec import go_type
from building_blocks.state import query as q
from building_blocks.state.base import (
    NO_METADATA,
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

__all__ = ("StateBlock",)

_ITEM_FIELDS = {"key", "value", "etag", "metadata", "options", "contentType"}
_CANONICAL = {name.lower(): name for name in _ITEM_FIELDS}
_GO_INT = re.compile(r"[+-]?[0-9]+")
_INT64 = range(-(2**63), 2**63)
#: The TTLs Dapr's stores take (``state/utils.ParseTTL``): -1 (none) up to a 32-bit number of seconds.
_TTL = range(-1, 2**31)
_Entry = Entry[StateStore, None]


def _concurrency(value: Any) -> Concurrency:
    if not value:
        return Concurrency.LAST_WRITE
    try:
        return Concurrency(value)
    except ValueError:
        raise InvalidOption(f"unrecognized concurrency model '{value}'") from None


def _consistency(value: Any) -> Consistency:
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


def _required_key(key: Any, where: str) -> str:
    if isinstance(key, str) and key:
        return key
    if key is not None and not isinstance(key, str):
        raise InvalidRequest(f"json: cannot unmarshal {go_type(key)} into Go struct field {where}.key of type string")
    raise InvalidRequest('"key" is a required field')


def _options(value: Any, where: str) -> Mapping[str, Any]:
    """An item's ``options``: its fields must be strings (Go decodes them into string fields); their values
    are the store's business (``_concurrency``, ``_consistency``)."""
    if value is None:
        return NO_METADATA
    option_type = "SetStateOption" if where != "DeleteRequest" else "DeleteStateOption"
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"json: cannot unmarshal {go_type(value)} into Go struct field {where}.options of type state.{option_type}"
        )
    for name in ("concurrency", "consistency"):
        option = value.get(name)
        if option is not None and not isinstance(option, str):
            raise InvalidRequest(
                f"json: cannot unmarshal {go_type(option)} into Go struct field "
                f"{option_type}.options.{name} of type string"
            )
    return value


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidRequest(f"json: cannot unmarshal {where} into a map of strings")
    return value


def _fields(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidRequest(f"json: cannot unmarshal {go_type(item)} into Go value of type {where}")
    if item.keys() <= _ITEM_FIELDS:
        return item
    # Go decodes field names case-insensitively and ignores unknown ones.
    return {_CANONICAL[k.lower()]: v for k, v in item.items() if k.lower() in _CANONICAL}


def _etag(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(
            f"json: cannot unmarshal {go_type(value)} into Go struct field {where}.etag of type string"
        )
    return value


def _check_operation(operation: dict[str, Any]) -> None:
    if operation.get("operation") not in ("upsert", "delete"):
        raise UnsupportedOperation(str(operation.get("operation")))
    _required_key(_fields(operation.get("request"), "TransactionalRequest").get("key"), "request")


def _merged(own: Mapping[str, str], query_metadata: Mapping[str, str]) -> Mapping[str, str]:
    if not query_metadata:
        return own or NO_METADATA
    return {**own, **query_metadata}


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

    # -- requests from decoded JSON -------------------------------------------------------------------

    def _set_request(
        self, entry: _Entry, item: Any, query_metadata: Mapping[str, str], where: str = "SetRequest"
    ) -> SetRequest:
        fields = _fields(item, where)
        key = _required_key(fields.get("key"), where)
        metadata = _merged(_string_map(fields.get("metadata"), "metadata"), query_metadata)
        options = _options(fields.get("options"), where)
        content_type = fields.get("contentType") or (metadata.get("contentType") if metadata else None)
        return SetRequest(
            key=self._key(entry, key),
            value=jsoncodec.dumps(fields.get("value")),
            etag=_etag(fields.get("etag"), where),
            metadata=metadata,
            concurrency=_concurrency(options.get("concurrency")),
            consistency=_consistency(options.get("consistency")),
            ttl=_ttl(metadata),
            content_type=content_type if isinstance(content_type, str) else None,
        )

    def _delete_request(self, entry: _Entry, item: Any, query_metadata: Mapping[str, str]) -> DeleteRequest:
        fields = _fields(item, "DeleteRequest")
        options = _options(fields.get("options"), "DeleteRequest")
        return DeleteRequest(
            self._key(entry, _required_key(fields.get("key"), "DeleteRequest")),
            _etag(fields.get("etag"), "DeleteRequest"),
            _merged(_string_map(fields.get("metadata"), "metadata"), query_metadata),
            _concurrency(options.get("concurrency")),
            _consistency(options.get("consistency")),
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

    async def save(self, name: str, items: Any, query_metadata: Mapping[str, str] = NO_METADATA) -> None:
        """Save decoded JSON items (Dapr's save body); several items are not atomic."""
        entry = self.entry(name)
        if not isinstance(items, list):
            raise InvalidRequest(f"json: cannot unmarshal {go_type(items)} into Go value of type []SetRequest")
        # The caller's own mistakes are 400s, checked before anything is written.
        await map_items(lambda item: _required_key(_fields(item, "SetRequest").get("key"), "SetRequest"), items)
        if not items:
            return
        await self.operation(Operation.STATE_SAVE, name, "", self._save, entry, items, query_metadata)

    async def _save(self, entry: _Entry, items: list[Any], query_metadata: Mapping[str, str]) -> None:
        """The store's part of ``save``: a bad option or TTL is the store refusing the write, as in Dapr."""
        requests = await map_items(lambda item: self._set_request(entry, item, query_metadata), items)
        if len(requests) == 1:
            await entry.component.set(requests[0])
        else:
            await entry.component.bulk_set(requests)

    async def delete(
        self,
        name: str,
        key: str,
        etag: str | None = None,
        concurrency: str = "",
        consistency: str = "",
        metadata: Mapping[str, str] = NO_METADATA,
    ) -> None:
        entry = self.entry(name)
        stored_key = self._key(entry, key)
        await self.operation(
            Operation.STATE_DELETE, name, key, self._delete, entry, stored_key, etag, concurrency, consistency, metadata
        )

    @staticmethod
    async def _delete(
        entry: _Entry, key: str, etag: str | None, concurrency: str, consistency: str, metadata: Mapping[str, str]
    ) -> None:
        """The store's part of ``delete``: a bad option is the store refusing it, as in Dapr."""
        request = DeleteRequest(key, etag or None, metadata, _concurrency(concurrency), _consistency(consistency))
        await entry.component.delete(request)

    async def bulk_get(
        self, name: str, body: Any, query_metadata: Mapping[str, str] = NO_METADATA
    ) -> list[BulkGetItem]:
        """Decoded ``{"keys": [...], "metadata": {...}}``; one entry per key, in request order."""
        entry = self.entry(name)
        if not isinstance(body, dict):
            raise InvalidRequest(f"failed deserializing HTTP body: expected an object, got {go_type(body)}")
        keys = body.get("keys") or []
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise InvalidRequest("failed deserializing HTTP body: keys must be a list of strings")
        metadata = _merged(_string_map(body.get("metadata"), "metadata"), query_metadata)
        requests = await map_items(lambda key: GetRequest(self._key(entry, key), metadata), keys)
        if not requests:
            return []
        items = await self.operation(Operation.STATE_BULK_GET, name, "", entry.component.bulk_get, requests)
        pairs = list(zip(keys, items, strict=True))  # the store's items carry prefixed keys: answer the caller's
        return await map_items(lambda pair: BulkGetItem(pair[0], pair[1].response, pair[1].error), pairs)

    async def transact(self, name: str, body: Any, query_metadata: Mapping[str, str] = NO_METADATA) -> None:
        """Decoded ``{"operations": [{"operation": "upsert"|"delete", "request": {...}}], "metadata": {}}``."""
        entry = self.entry(name)
        store = entry.component
        if Feature.TRANSACTIONAL not in store.features:
            raise FeatureNotSupported(name, "transactions")
        if not isinstance(body, dict):
            raise InvalidRequest(f"json: cannot unmarshal {go_type(body)} into Go value of type TransactionRequest")
        operations = body.get("operations") or []
        if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
            raise InvalidRequest("json: cannot unmarshal operations into Go value of type []TransactionalOperation")
        await map_items(_check_operation, operations)
        metadata = _merged(_string_map(body.get("metadata"), "metadata"), query_metadata)
        if not operations:
            return
        limit = store.max_transaction_operations
        if limit and len(operations) > limit:
            raise TooManyOperations(name, len(operations), limit)
        await self.operation(
            Operation.STATE_TRANSACTION, name, "", self._transact, entry, operations, metadata, query_metadata
        )

    async def _transact(
        self,
        entry: _Entry,
        operations: list[dict[str, Any]],
        metadata: Mapping[str, str],
        query_metadata: Mapping[str, str],
    ) -> None:
        """The store's part of ``transact``: a bad option is the store refusing the transaction, as in Dapr."""

        def request(op: dict[str, Any]) -> SetRequest | DeleteRequest:
            if op["operation"] == "upsert":
                return self._set_request(entry, op["request"], query_metadata, "TransactionalUpsert")
            return self._delete_request(entry, op["request"], query_metadata)

        requests = await map_items(request, operations)
        await entry.component.transact(TransactionRequest(requests, metadata))

    async def query(self, name: str, body: bytes, metadata: Mapping[str, str] = NO_METADATA) -> QueryResponse:
        entry = self.entry(name)
        if Feature.QUERY_API not in entry.component.features:
            raise FeatureNotSupported(name, "querying")
        return await self.operation(Operation.STATE_QUERY, name, "", self._query, entry, body, metadata)

    @staticmethod
    async def _query(entry: _Entry, body: bytes, metadata: Mapping[str, str]) -> QueryResponse:
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
