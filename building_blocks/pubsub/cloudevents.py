"""CloudEvents 1.0 envelopes exactly as Dapr builds them for publishing and for raw-payload delivery."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from building_blocks import jsoncodec

__all__ = ("DEFAULT_TYPE", "complete_user_event", "new_event", "raw_payload_event", "rfc3339_now")

DEFAULT_TYPE = "com.dapr.event.sent"
SPEC_VERSION = "1.0"


def rfc3339_now() -> str:
    """Go's ``time.Now().Format(time.RFC3339)``: seconds, local offset, ``Z`` for UTC."""
    text = datetime.now().astimezone().isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _is_json(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return base == "application/json" or base.endswith("+json")


def _data_fields(body: bytes, content_type: str) -> dict[str, Any]:
    """``data`` of the envelope. A JSON body goes in as the app wrote it, byte for byte: Dapr only checks that
    it parses (and would re-encode it), so decoding it here would cost time and risk its depth or numbers."""
    if _is_json(content_type):
        if jsoncodec.is_json(body):
            return {"data": orjson.Fragment(body)}
        return {"data": body.decode(errors="replace")}
    if content_type.split(";", 1)[0].strip().lower() == "application/octet-stream":
        return {"data_base64": base64.b64encode(body).decode()}
    return {"data": body.decode(errors="replace")}


def new_event(
    body: bytes,
    content_type: str,
    *,
    topic: str,
    pubsub: str,
    source: str,
    trace: Mapping[str, str],
    overrides: Mapping[str, str],
) -> dict[str, Any]:
    """The envelope Dapr wraps around a published body; ``overrides`` are ``cloudevent.*`` metadata."""
    content_type = content_type or "text/plain"
    traceparent = overrides.get("traceparent") or overrides.get("traceid") or trace.get("traceparent", "")
    event: dict[str, Any] = {
        "id": overrides.get("id") or str(uuid.uuid4()),
        "source": overrides.get("source") or source or "Dapr",
        "type": overrides.get("type") or DEFAULT_TYPE,
        "specversion": SPEC_VERSION,
        "datacontenttype": content_type,
        "topic": topic,
        "pubsubname": pubsub,
        "traceid": traceparent,
        "traceparent": traceparent,
        "tracestate": overrides.get("tracestate") or trace.get("tracestate", ""),
        "time": rfc3339_now(),
    }
    if overrides.get("subject"):
        event["subject"] = overrides["subject"]
    event.update(_data_fields(body, content_type))
    return event


def complete_user_event(event: dict[str, Any], *, topic: str, pubsub: str, trace: Mapping[str, str]) -> dict[str, Any]:
    """A CloudEvent sent by the app: Dapr overwrites topic/pubsubname and fills what is missing."""
    event["topic"] = topic
    event["pubsubname"] = pubsub
    event.setdefault("time", rfc3339_now())
    if "traceid" not in event:
        event["traceid"] = event["traceparent"] = trace.get("traceparent", "")
    event.setdefault("tracestate", trace.get("tracestate", ""))
    event.setdefault("source", "Dapr")
    event.setdefault("type", DEFAULT_TYPE)
    event.setdefault("specversion", SPEC_VERSION)
    return event


def raw_payload_event(data: bytes, *, topic: str, pubsub: str, metadata: Mapping[str, str]) -> dict[str, Any]:
    """What a ``rawPayload`` subscriber receives: the broker bytes, base64, in a fresh envelope."""
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "source": "Dapr",
        "type": DEFAULT_TYPE,
        "specversion": SPEC_VERSION,
        "datacontenttype": "application/octet-stream",
        "topic": topic,
        "pubsubname": pubsub,
        "data_base64": base64.b64encode(data).decode(),
    }
    for name in ("traceparent", "tracestate"):
        if metadata.get(name):
            event[name] = metadata[name]
    return event
