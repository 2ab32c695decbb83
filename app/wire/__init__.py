"""The HTTP front's decoders: one module per block turns a request's bytes, query and path parameters into
the block's frozen request dataclasses, with Dapr's messages for malformed input. Blocks never see JSON.

Shared here: reading a JSON body, and a protobuf-JSON one (Dapr's alpha APIs decode their bodies with
``protojson``), so every decoder says "failed deserializing HTTP body" the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from building_blocks import jsoncodec
from building_blocks.errors import InvalidRequest

__all__ = ("BAD_BODY", "json_document", "protobuf_object", "string_map")

#: The prefix daprd puts before a protobuf-JSON decoding error.
BAD_BODY = "failed deserializing HTTP body: "


def json_document(body: bytes, prefix: str = "") -> object:
    """The decoded JSON body; ``InvalidRequest`` with the decoder's message (``EOF`` when empty, as Go's)."""
    if not body.strip():
        raise InvalidRequest(f"{prefix}EOF")
    try:
        decoded: object = jsoncodec.loads(body)
    except ValueError as exc:
        raise InvalidRequest(f"{prefix}{exc}") from None
    return decoded


def protobuf_object(body: bytes) -> dict[str, object]:
    """A protobuf-JSON message body as a JSON object; an empty body is the empty message, as in protojson."""
    if not body.strip():
        return {}
    decoded = json_document(body, BAD_BODY)
    if not isinstance(decoded, dict):
        raise InvalidRequest(f"{BAD_BODY}the body must be a JSON object")
    return decoded


def string_map(value: object, where: str) -> Mapping[str, str]:
    """A JSON object of strings (``None`` is empty); ``InvalidRequest`` naming ``where`` otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(text, str) for text in value.values()):
        raise InvalidRequest(f"{where} must be an object of strings")
    return dict(value)
