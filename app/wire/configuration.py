"""Configuration requests into the block's: Dapr's reads take ``key`` (repeated) and ``metadata.*`` query
parameters; Layotto's save takes ``{"items": [{"key", "value", "metadata"}], "metadata": {}}``.

The save body's messages are the API's own (Layotto has no HTTP save); its ``metadata`` is merged with the
query's, the query winning. That at least one item (and one key to delete) is given, each with a key, is the
block's rule.
"""

from __future__ import annotations

from starlette.datastructures import QueryParams

from app.http import metadata_from_query
from app.wire import json_document, string_map
from building_blocks.configuration.base import DeleteRequest, GetRequest, SaveItem, SaveRequest, SubscribeRequest
from building_blocks.errors import InvalidRequest

__all__ = ("delete", "get", "save", "subscribe")

_NOT_AN_OBJECT = 'the body must be an object: {"items": [{"key": ..., "value": ...}]}'


def _keys(query: bytes) -> tuple[str, ...]:
    return tuple(QueryParams(query).getlist("key"))


def get(query: bytes) -> GetRequest:
    return GetRequest(_keys(query), metadata_from_query(query))


def subscribe(query: bytes) -> SubscribeRequest:
    return SubscribeRequest(_keys(query), metadata_from_query(query))


def delete(query: bytes) -> DeleteRequest:
    return DeleteRequest(_keys(query), metadata_from_query(query))


def _item(item: object) -> SaveItem:
    if not isinstance(item, dict):
        raise InvalidRequest("each item must be an object")
    key, value = item.get("key", ""), item.get("value")
    if not isinstance(key, str):
        raise InvalidRequest('"key" is a required field')
    if not isinstance(value, str):
        raise InvalidRequest(f'"value" of {key} must be a string')
    return SaveItem(key, value, string_map(item.get("metadata"), f'"metadata" of {key}'))


def save(body: bytes, query: bytes) -> SaveRequest:
    document = json_document(body)
    if not isinstance(document, dict):
        raise InvalidRequest(_NOT_AN_OBJECT)
    items = document.get("items", [])
    if not isinstance(items, list):
        raise InvalidRequest('"items" must be a non-empty list')
    parsed = [_item(item) for item in items]
    metadata = {**string_map(document.get("metadata"), '"metadata"'), **metadata_from_query(query)}
    return SaveRequest(parsed, metadata)
