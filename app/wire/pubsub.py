"""Bulk publish bodies (Dapr's HTTP JSON) into the pub/sub block's entries.

Dapr decodes the body into ``[]{entryId, event, contentType string; metadata map[string]string}`` (field
names case-insensitively) before it looks at any entry, so a field of the wrong JSON type anywhere fails the
whole request with Go's message. An entry's ``event`` is JSON: a string for ``text/*``, XML and base64 for
``application/octet-stream``, any JSON for JSON content types; one that does not fit its content type is
passed on as ``None`` and reported by the block in entry order, as Dapr reports it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from building_blocks import jsoncodec
from building_blocks._common.cooperative import map_items
from building_blocks.errors import BulkEventsInvalid
from building_blocks.jsoncodec import go_type
from building_blocks.pubsub.base import BulkPublishEntry
from building_blocks.pubsub.block import CLOUDEVENT_CONTENT_TYPE

__all__ = ("bulk_entries",)

_ENTRY_FIELDS = {name.lower(): name for name in ("entryId", "event", "contentType", "metadata")}
_WHERE = "Go struct field bulkPublishMessageEntry"


def _event_bytes(event: object, content_type: str) -> bytes | None:
    """An entry's event as bytes per its content type, or None when they don't fit together."""
    base = content_type.split(";", 1)[0].strip().lower()
    if base == "application/octet-stream":
        if not isinstance(event, str):
            return None
        try:
            return base64.b64decode(event, validate=True)
        except binascii.Error:
            return None
    if base.startswith("text/") or base == "application/xml":
        return event.encode() if isinstance(event, str) else None
    if base in ("application/json", CLOUDEVENT_CONTENT_TYPE) or base.endswith("+json"):
        return jsoncodec.dumps(event)
    return None


def _entry_fields(entry: object) -> dict[str, object] | str:
    """An entry's fields, or the Go decoder's complaint about it."""
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        return f"json: cannot unmarshal {go_type(entry)} into Go value of type http.bulkPublishMessageEntry"
    fields = {_ENTRY_FIELDS[k.lower()]: v for k, v in entry.items() if k.lower() in _ENTRY_FIELDS}
    for name in ("entryId", "contentType"):
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            return f"json: cannot unmarshal {go_type(value)} into {_WHERE}.{name} of type string"
    metadata = fields.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            return f"json: cannot unmarshal {go_type(metadata)} into {_WHERE}.metadata of type map[string]string"
        for value in metadata.values():
            if value is not None and not isinstance(value, str):
                return f"json: cannot unmarshal {go_type(value)} into {_WHERE}.metadata of type string"
    return fields


def _entry(fields: dict[str, object]) -> BulkPublishEntry:
    content_type = str(fields.get("contentType") or "")
    raw_metadata = fields.get("metadata")
    metadata: Mapping[str, str] = (
        {k: v or "" for k, v in raw_metadata.items()} if isinstance(raw_metadata, dict) else {}
    )
    return BulkPublishEntry(
        str(fields.get("entryId") or ""), _event_bytes(fields.get("event"), content_type), content_type, metadata
    )


async def bulk_entries(pubsub: str, topic: str, body: bytes) -> list[BulkPublishEntry]:
    """The entries of a bulk publish body; ``BulkEventsInvalid`` ("unmarshal") when Go would not decode it."""
    try:
        entries = jsoncodec.loads(body)
    except ValueError as exc:
        detail = str(exc)
    else:
        if entries is None:  # Go decodes null into an empty slice
            return []
        if isinstance(entries, list):
            fields = await map_items(_entry_fields, entries)
            if not (detail := next((f for f in fields if isinstance(f, str)), "")):
                return await map_items(_entry, [f for f in fields if isinstance(f, dict)])
        else:
            detail = f"json: cannot unmarshal {go_type(entries)} into Go value of type []http.bulkPublishMessageEntry"
    message = f"error when unmarshaling the request for topic {topic} pubsub {pubsub}: {detail}"
    raise BulkEventsInvalid(pubsub, topic, "unmarshal", message)
