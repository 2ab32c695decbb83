"""Payloads and raw requests of the scenarios (1 KB by default, as in Dapr's runs)."""

from __future__ import annotations

from typing import Any

import orjson

from perf.loadgen import http_request

__all__ = ("JSON", "event", "value", "value_bytes")

JSON = {"Content-Type": "application/json"}


def value(size: int) -> dict[str, str]:
    """A JSON object whose encoding is exactly ``size`` bytes (at least 12)."""
    return {"data": "x" * max(size - len(b'{"data":""}'), 1)}


def value_bytes(size: int) -> bytes:
    return orjson.dumps(value(size))


def event(run: str, index: int, scheduled_ns: int, size: int) -> bytes:
    """An end-to-end message: run id, index and scheduled send time (ns, CLOCK_MONOTONIC), padded to ``size``."""
    head: dict[str, Any] = {"r": run, "i": index, "t": scheduled_ns, "pad": ""}
    head["pad"] = "x" * max(size - len(orjson.dumps(head)), 0)
    return orjson.dumps(head)


def publish_request(pubsub: str, topic: str, run: str, size: int) -> Any:
    """A request factory ``(index, scheduled ns) -> bytes`` publishing ``event`` messages."""
    path = f"/v1.0/publish/{pubsub}/{topic}"

    def build(index: int, scheduled_ns: int) -> bytes:
        return http_request("POST", path, event(run, index, scheduled_ns, size), JSON)

    return build
