"""The configuration decoders: query strings and the save body into typed requests."""

from __future__ import annotations

import pytest

from app.wire import configuration
from building_blocks.configuration.base import DeleteRequest, GetRequest, SaveItem, SaveRequest, SubscribeRequest
from building_blocks.errors import InvalidRequest


def test_keys_and_metadata_come_from_the_query() -> None:
    query = b"key=a&key=b%20c&metadata.m=1&metadata.m=2&other=x"
    assert configuration.get(query) == GetRequest(("a", "b c"), {"m": "1"})
    assert configuration.subscribe(query) == SubscribeRequest(("a", "b c"), {"m": "1"})
    assert configuration.delete(b"") == DeleteRequest(())  # the block requires a key


def test_save_merges_body_and_query_metadata_the_query_winning() -> None:
    body = b'{"items": [{"key": "k", "value": "v", "metadata": {"a": "1"}}], "metadata": {"x": "body", "y": "1"}}'
    request = configuration.save(body, b"metadata.x=query")
    assert request == SaveRequest([SaveItem("k", "v", {"a": "1"})], {"x": "query", "y": "1"})


@pytest.mark.parametrize("body", [b"{}", b'{"items": []}', b'{"items": [{"value": "v"}]}'])
def test_empty_items_and_keys_are_left_to_the_block(body: bytes) -> None:
    assert all(not item.key for item in configuration.save(body, b"").items)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "EOF"),
        (b"[]", 'the body must be an object: {"items": [{"key": ..., "value": ...}]}'),
        (b'{"items": null}', '"items" must be a non-empty list'),
        (b'{"items": {}}', '"items" must be a non-empty list'),
        (b'{"items": [1]}', "each item must be an object"),
        (b'{"items": [{"key": 5, "value": "v"}]}', '"key" is a required field'),
        (b'{"items": [{"key": null, "value": "v"}]}', '"key" is a required field'),
        (b'{"items": [{"key": "k"}]}', '"value" of k must be a string'),
        (
            b'{"items": [{"key": "k", "value": "v", "metadata": {"a": 1}}]}',
            '"metadata" of k must be an object of strings',
        ),
        (b'{"items": [{"key": "k", "value": "v"}], "metadata": []}', '"metadata" must be an object of strings'),
    ],
)
def test_malformed_save_bodies(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        configuration.save(body, b"")
    assert str(raised.value) == message


def test_a_body_that_is_not_json_keeps_the_decoders_message() -> None:
    with pytest.raises(InvalidRequest, match=r"^.+$"):
        configuration.save(b"not json", b"")
