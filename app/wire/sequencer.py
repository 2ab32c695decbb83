"""Sequencer bodies (Layotto's ``GetNextIdRequest``/``GetSegmentRequest`` in JSON) into the block's requests.

One route takes both: a body with ``size`` (even ``null``) asks for a segment, any other for the next id.
Type errors are daprd's "failed deserializing HTTP body"; an increment that is not ``WEAK``/``STRONG`` (or
their enum numbers 0/1) and a size that is not an integer have messages of their own. Whether the key is
empty and the size positive are the block's rules.
"""

from __future__ import annotations

from app.wire import BAD_BODY, protobuf_object, string_map
from building_blocks.errors import InvalidRequest
from building_blocks.sequencer.base import Increment, NextIdRequest, SegmentRequest

__all__ = ("request",)

_INCREMENTS: dict[object, Increment] = {
    "WEAK": Increment.WEAK,
    "STRONG": Increment.STRONG,
    0: Increment.WEAK,
    1: Increment.STRONG,
}


def _increment(value: object) -> Increment:
    if value is None or value == "":
        return Increment.WEAK
    found = _INCREMENTS.get(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
    if found is None:
        raise InvalidRequest(f"options.increment is illegal: {value!r} (WEAK or STRONG)")
    return found


def _size(value: object, store: str) -> int:
    """An integer, or one in a string (the block judges its range)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise InvalidRequest(f"size must be a positive integer in sequencer store {store}, got {value!r}")


def request(body: bytes, store: str) -> NextIdRequest | SegmentRequest:
    """The request of a body POSTed to sequencer ``store``."""
    fields = protobuf_object(body)
    key = fields.get("key")
    if key is not None and not isinstance(key, str):
        raise InvalidRequest(f"{BAD_BODY}key: invalid value for string type: {key!r}")
    options = fields.get("options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest(f"{BAD_BODY}options must be an object")
    metadata = string_map(fields.get("metadata"), f"{BAD_BODY}metadata")
    increment = _increment((options or {}).get("increment"))
    if "size" in fields:
        return SegmentRequest(key or "", _size(fields["size"], store), metadata)
    return NextIdRequest(key or "", increment, metadata)
