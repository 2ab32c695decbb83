"""Delivering pub/sub events to the app over HTTP, and reading its answer as Dapr does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from app.app_channel import AppChannel
from app.observability.delivery import observed_delivery
from building_blocks.pubsub.subscriber import DeliveryStatus

__all__ = ("HttpPostman",)

_STATUSES = {"SUCCESS": DeliveryStatus.SUCCESS, "RETRY": DeliveryStatus.RETRY, "DROP": DeliveryStatus.DROP}


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


class HttpPostman:
    """POSTs events to the app's routes through the app channel."""

    def __init__(self, channel: AppChannel) -> None:
        self.channel = channel

    async def deliver(
        self, path: str, body: bytes, content_type: str, headers: Mapping[str, str], timeout: float | None
    ) -> DeliveryStatus:
        channel = self.channel
        if channel.metrics is not None or channel.tracing is not None:
            return await observed_delivery(
                self._deliver, channel.metrics, channel.tracing, path, body, content_type, headers, timeout
            )
        return await self._deliver(path, body, content_type, headers, timeout)

    async def _deliver(
        self, path: str, body: bytes, content_type: str, headers: Mapping[str, str], timeout: float | None
    ) -> DeliveryStatus:
        response = await self.channel.request(
            "POST", path, body, {**headers, "content-type": content_type}, timeout=timeout
        )
        if response.status_code == 404:
            return DeliveryStatus.NOT_FOUND
        if not 200 <= response.status_code < 300:
            return DeliveryStatus.RETRY
        answer = _json(response.content)
        status = answer.get("status") if isinstance(answer, dict) else None
        if not status:  # empty body, not JSON, or no status: success
            return DeliveryStatus.SUCCESS
        return _STATUSES.get(status, DeliveryStatus.RETRY) if isinstance(status, str) else DeliveryStatus.RETRY

    async def deliver_bulk(
        self, path: str, envelope: bytes, entry_ids: Sequence[str], timeout: float | None
    ) -> dict[str, DeliveryStatus]:
        response = await self.channel.request(
            "POST", path, envelope, {"content-type": "application/json"}, timeout=timeout
        )
        if response.status_code == 404:
            return dict.fromkeys(entry_ids, DeliveryStatus.NOT_FOUND)
        if not 200 <= response.status_code < 300:
            return {}
        answer = _json(response.content)
        statuses = answer.get("statuses") if isinstance(answer, dict) else None
        if not isinstance(statuses, list):
            return {}
        wanted = set(entry_ids)
        return {
            item["entryId"]: _STATUSES.get(item.get("status") or "", DeliveryStatus.RETRY)
            for item in statuses
            if isinstance(item, dict) and item.get("entryId") in wanted
        }
