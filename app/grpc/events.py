"""Pub/sub deliveries on the gRPC wire: the CloudEvent the subscriber prepared, as Dapr's ``TopicEventRequest``
(for streaming subscriptions and for ``AppCallback.OnTopicEvent``), and the app's answer as a delivery status.

As daprd's: ``data`` is ``data_base64`` decoded, a string as its UTF-8 bytes (for non-JSON content types),
anything else JSON-encoded; attributes beyond the mapped ones travel in ``extensions``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from typing import Any

from dapr.proto.runtime.v1 import appcallback_pb2
from google.protobuf import struct_pb2

from building_blocks import jsoncodec
from building_blocks.pubsub.subscriber import DeliveryFailed, DeliveryStatus

__all__ = ("status_of", "topic_event")

_MAPPED = {
    "id",
    "source",
    "type",
    "specversion",
    "datacontenttype",
    "data",
    "data_base64",
    "topic",
    "pubsubname",
}
_STATUSES = {
    appcallback_pb2.TopicEventResponse.SUCCESS: DeliveryStatus.SUCCESS,
    appcallback_pb2.TopicEventResponse.RETRY: DeliveryStatus.RETRY,
    appcallback_pb2.TopicEventResponse.DROP: DeliveryStatus.DROP,
}


def _text(event: dict[str, Any], name: str) -> str:
    value = event.get(name)
    return value if isinstance(value, str) else ""


def _data(event: dict[str, Any], content_type: str) -> bytes:
    encoded = event.get("data_base64")
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise DeliveryFailed("data_base64 of the event is not base64") from None
    data = event.get("data")
    if data is None:
        return b""
    if isinstance(data, str) and "json" not in content_type.lower():
        return data.encode()
    return jsoncodec.dumps(data)


def topic_event(body: bytes, path: str) -> appcallback_pb2.TopicEventRequest:
    """The delivery of a prepared CloudEvent (``body``) to route ``path``."""
    try:
        event = jsoncodec.loads(body)
    except ValueError:
        raise DeliveryFailed("the event is not a CloudEvent") from None
    if not isinstance(event, dict):
        raise DeliveryFailed("the event is not a CloudEvent")
    content_type = _text(event, "datacontenttype")
    extensions = struct_pb2.Struct()
    extras = {name: value for name, value in event.items() if name not in _MAPPED}
    if extras:
        with contextlib.suppress(ValueError, TypeError):  # a value Struct cannot hold (a huge integer): left out
            extensions.update(extras)
    return appcallback_pb2.TopicEventRequest(
        id=_text(event, "id"),
        source=_text(event, "source"),
        type=_text(event, "type"),
        spec_version=_text(event, "specversion"),
        data_content_type=content_type,
        data=_data(event, content_type),
        topic=_text(event, "topic"),
        pubsub_name=_text(event, "pubsubname"),
        path=path,
        extensions=extensions,
    )


def status_of(response: appcallback_pb2.TopicEventResponse) -> DeliveryStatus:
    """An unknown status is RETRY, as in daprd."""
    return _STATUSES.get(response.status, DeliveryStatus.RETRY)
