"""State bodies (Dapr's HTTP JSON) into the state block's requests, with the messages Go's decoder gives.

Dapr decodes a save body into ``[]state.SetRequest``, a bulk get into ``{keys, metadata, parallelism}`` and a
transaction into ``{operations: [{operation, request}], metadata}``: field names case-insensitively, unknown
fields ignored, a field of the wrong JSON type refused with ``json: cannot unmarshal <type> into Go struct
field ...``. The values of options are not judged here: an unknown ``concurrency`` is the store refusing
the write (a 500 in Dapr), so it travels as the app's text. ``metadata.*`` query parameters are merged into
each item's metadata (the query wins, as in Dapr).

Bodies of up to ``--max-body-size`` hold ~100,000 items: each list is walked with ``map_items``, which
yields the event loop between slices.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.wire import BAD_BODY, json_document
from building_blocks import jsoncodec
from building_blocks._common.cooperative import map_items
from building_blocks.empty import NO_METADATA
from building_blocks.errors import InvalidRequest, UnsupportedOperation
from building_blocks.jsoncodec import go_type
from building_blocks.state.base import BulkGet, DeleteItem, SaveItem, StateTransaction

__all__ = ("bulk_get", "save_items", "transaction")

_ITEM_FIELDS = {"key", "value", "etag", "metadata", "options", "contentType"}
_CANONICAL = {name.lower(): name for name in _ITEM_FIELDS}


def _fields(item: object, where: str) -> dict[str, object]:
    if not isinstance(item, dict):
        raise InvalidRequest(f"json: cannot unmarshal {go_type(item)} into Go value of type {where}")
    if item.keys() <= _ITEM_FIELDS:
        return item
    # Go decodes field names case-insensitively and ignores unknown ones.
    return {_CANONICAL[k.lower()]: v for k, v in item.items() if k.lower() in _CANONICAL}


def _required_key(key: object, where: str) -> str:
    if isinstance(key, str) and key:
        return key
    if key is not None and not isinstance(key, str):
        raise InvalidRequest(f"json: cannot unmarshal {go_type(key)} into Go struct field {where}.key of type string")
    raise InvalidRequest('"key" is a required field')


def _options(value: object, where: str) -> tuple[str, str]:
    """An item's ``(concurrency, consistency)``: Go decodes them into string fields."""
    if value is None:
        return "", ""
    option_type = "SetStateOption" if where != "DeleteRequest" else "DeleteStateOption"
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"json: cannot unmarshal {go_type(value)} into Go struct field {where}.options of type state.{option_type}"
        )
    words: list[str] = []
    for name in ("concurrency", "consistency"):
        option = value.get(name)
        if option is not None and not isinstance(option, str):
            raise InvalidRequest(
                f"json: cannot unmarshal {go_type(option)} into Go struct field "
                f"{option_type}.options.{name} of type string"
            )
        words.append(option or "")
    return words[0], words[1]


def _string_map(value: object) -> Mapping[str, str]:
    if value is None:
        return NO_METADATA
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidRequest("json: cannot unmarshal metadata into a map of strings")
    return value


def _etag(value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(
            f"json: cannot unmarshal {go_type(value)} into Go struct field {where}.etag of type string"
        )
    return value


def _merged(own: Mapping[str, str], query_metadata: Mapping[str, str]) -> Mapping[str, str]:
    if not query_metadata:
        return own or NO_METADATA
    return {**own, **query_metadata}


def _save_item(item: object, query_metadata: Mapping[str, str], where: str = "SetRequest") -> SaveItem:
    fields = _fields(item, where)
    key = _required_key(fields.get("key"), where)
    metadata = _merged(_string_map(fields.get("metadata")), query_metadata)
    concurrency, consistency = _options(fields.get("options"), where)
    content_type = fields.get("contentType") or (metadata.get("contentType") if metadata else None)
    return SaveItem(
        key,
        jsoncodec.dumps(fields.get("value")),
        _etag(fields.get("etag"), where),
        metadata,
        concurrency,
        consistency,
        content_type if isinstance(content_type, str) else None,
    )


def _delete_item(item: object, query_metadata: Mapping[str, str]) -> DeleteItem:
    fields = _fields(item, "DeleteRequest")
    concurrency, consistency = _options(fields.get("options"), "DeleteRequest")
    return DeleteItem(
        _required_key(fields.get("key"), "DeleteRequest"),
        _etag(fields.get("etag"), "DeleteRequest"),
        _merged(_string_map(fields.get("metadata")), query_metadata),
        concurrency,
        consistency,
    )


async def save_items(body: bytes, query_metadata: Mapping[str, str] = NO_METADATA) -> list[SaveItem]:
    """A save body: a JSON array of items, every one with a key."""
    items = json_document(body)
    if not isinstance(items, list):
        raise InvalidRequest(f"json: cannot unmarshal {go_type(items)} into Go value of type []SetRequest")
    # Missing keys are reported before any other problem of any item, as Dapr checks them first.
    await map_items(lambda item: _required_key(_fields(item, "SetRequest").get("key"), "SetRequest"), items)
    return await map_items(lambda item: _save_item(item, query_metadata), items)


async def bulk_get(body: bytes, query_metadata: Mapping[str, str] = NO_METADATA) -> BulkGet:
    """A bulk get body: ``{"keys": [...], "metadata": {...}}``."""
    document = json_document(body, BAD_BODY)
    if not isinstance(document, dict):
        raise InvalidRequest(f"{BAD_BODY}expected an object, got {go_type(document)}")
    keys = document.get("keys") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InvalidRequest(f"{BAD_BODY}keys must be a list of strings")
    return BulkGet(keys, _merged(_string_map(document.get("metadata")), query_metadata))


def _check_operation(operation: dict[str, object]) -> None:
    if operation.get("operation") not in ("upsert", "delete"):
        raise UnsupportedOperation(str(operation.get("operation")))
    _required_key(_fields(operation.get("request"), "TransactionalRequest").get("key"), "request")


def _operation(operation: dict[str, object], query_metadata: Mapping[str, str]) -> SaveItem | DeleteItem:
    if operation["operation"] == "upsert":
        return _save_item(operation["request"], query_metadata, "TransactionalUpsert")
    return _delete_item(operation["request"], query_metadata)


async def transaction(body: bytes, query_metadata: Mapping[str, str] = NO_METADATA) -> StateTransaction:
    """A transaction body: ``{"operations": [{"operation": "upsert"|"delete", "request": {...}}], ...}``.

    Every operation's kind and key are checked before anything else of any operation, as Dapr does."""
    document = json_document(body)
    if not isinstance(document, dict):
        raise InvalidRequest(f"json: cannot unmarshal {go_type(document)} into Go value of type TransactionRequest")
    operations = document.get("operations") or []
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise InvalidRequest("json: cannot unmarshal operations into Go value of type []TransactionalOperation")
    await map_items(_check_operation, operations)
    metadata = _merged(_string_map(document.get("metadata")), query_metadata)
    decoded = await map_items(lambda op: _operation(op, query_metadata), operations)
    return StateTransaction(decoded, metadata)
