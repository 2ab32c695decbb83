"""The sequencer decoder: one body, two requests (next id or segment), with the API's messages."""

from __future__ import annotations

import orjson
import pytest

from app.wire.sequencer import request
from building_blocks.errors import InvalidRequest
from building_blocks.sequencer.base import Increment, NextIdRequest, SegmentRequest


@pytest.mark.parametrize(
    ("options", "increment"),
    [
        (None, Increment.WEAK),
        ({}, Increment.WEAK),
        ({"increment": ""}, Increment.WEAK),
        ({"increment": "STRONG"}, Increment.STRONG),
        ({"increment": 0}, Increment.WEAK),
        ({"increment": 1}, Increment.STRONG),
    ],
)
def test_next_id_requests(options: dict[str, object] | None, increment: Increment) -> None:
    body = orjson.dumps({"key": "k", "options": options, "metadata": {"a": "b"}})
    assert request(body, "s") == NextIdRequest("k", increment, {"a": "b"})


def test_a_body_with_a_size_asks_for_a_segment() -> None:
    assert request(b'{"key": "k", "size": " 3"}', "s") == SegmentRequest("k", 3)
    assert request(b'{"key": "k", "size": -1}', "s") == SegmentRequest("k", -1)  # its range is the block's rule


@pytest.mark.parametrize("body", [b"", b"{}", b'{"key": null}'])
def test_an_empty_key_is_left_to_the_block(body: bytes) -> None:
    assert request(body, "s") == NextIdRequest("")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'"k"', "failed deserializing HTTP body: the body must be a JSON object"),
        (b'{"key": 7}', "failed deserializing HTTP body: key: invalid value for string type: 7"),
        (b'{"key": "k", "options": "STRONG"}', "failed deserializing HTTP body: options must be an object"),
        (
            b'{"key": "k", "metadata": {"a": 1}}',
            "failed deserializing HTTP body: metadata must be an object of strings",
        ),
        (b'{"key": "k", "metadata": []}', "failed deserializing HTTP body: metadata must be an object of strings"),
        (b'{"key": "k", "options": {"increment": 2}}', "options.increment is illegal: 2 (WEAK or STRONG)"),
        (b'{"key": "k", "options": {"increment": true}}', "options.increment is illegal: True (WEAK or STRONG)"),
        (b'{"key": "k", "options": {"increment": "weak"}}', "options.increment is illegal: 'weak' (WEAK or STRONG)"),
        (b'{"key": "k", "size": "many"}', "size must be a positive integer in sequencer store s, got 'many'"),
        (b'{"key": "k", "size": 1.5}', "size must be a positive integer in sequencer store s, got 1.5"),
        (b'{"key": "k", "size": null}', "size must be a positive integer in sequencer store s, got None"),
        (b'{"key": "k", "size": "-1"}', "size must be a positive integer in sequencer store s, got '-1'"),
    ],
)
def test_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        request(body, "s")
    assert str(raised.value) == message
