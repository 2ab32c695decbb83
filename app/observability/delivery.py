"""A pub/sub delivery to the app, observed: daprd's ingress count and latency, and the ``pubsub/<topic>`` span."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter
from typing import TYPE_CHECKING

import orjson

from building_blocks.pubsub.subscriber import DeliveryStatus

if TYPE_CHECKING:
    from app.observability.metrics import DaprMetrics
    from app.observability.tracing import Tracing

__all__ = ("observed_delivery",)

_PARSE_LIMIT = 64 << 10
_TOPIC = re.compile(rb'"topic"\s*:\s*"([^"\\]*)"')
Deliver = Callable[[str, bytes, str, Mapping[str, str], "float | None"], Awaitable[DeliveryStatus]]
#: daprd's ``process_status`` per answer of the app (a missing route is dropped, as daprd does).
_PROCESS_STATUS = {
    DeliveryStatus.SUCCESS: "success",
    DeliveryStatus.RETRY: "retry",
    DeliveryStatus.DROP: "drop",
    DeliveryStatus.NOT_FOUND: "drop",
}


def _topic(body: bytes) -> str:
    """The event's topic (the envelope says it; the postman is not told otherwise). A large event is not parsed
    again for it: its first ``"topic"`` field is read off the head (envelopes put it before the data)."""
    if len(body) > _PARSE_LIMIT:
        found = _TOPIC.search(body, 0, _PARSE_LIMIT)
        return found.group(1).decode("utf-8", "replace") if found else ""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    topic = event.get("topic") if isinstance(event, dict) else None
    return topic if isinstance(topic, str) else ""


async def observed_delivery(
    deliver: Deliver,
    metrics: DaprMetrics | None,
    tracing: Tracing | None,
    path: str,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str],
    timeout: float | None,
) -> DeliveryStatus:
    pubsub, topic = headers.get("pubsubname", ""), _topic(body)
    span = None
    if tracing is not None:
        headers = dict(headers)
        span = tracing.delivery(pubsub, topic, headers)
    started, status = perf_counter(), DeliveryStatus.RETRY
    try:
        status = await deliver(path, body, content_type, headers, timeout)
        return status
    finally:
        if metrics is not None:
            metrics.ingress(pubsub, topic, _PROCESS_STATUS[status], perf_counter() - started, path)
        if span is not None:
            span.end(200 if status is DeliveryStatus.SUCCESS else 500)
