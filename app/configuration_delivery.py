"""Configuration items on Dapr's wire, and the delivery of configuration updates to the app.

An item is ``{"value", "version", "metadata"}`` with empty fields left out (Go's ``omitempty``); a deleted
item is ``{}``. For every key of an update, Dapr POSTs the whole event ``{"id": <subscription id>,
"items": {key: item}}`` to the app at ``/configuration/<store>/<key>`` and expects exactly 200; anything
else (or no answer) is logged, and the update is not retried.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import orjson

from app.app_channel import AppChannel
from app.http_client import HttpClientError
from building_blocks.configuration.base import ConfigurationItem, ConfigurationUpdate
from building_blocks.configuration.block import Delivery

__all__ = ("app_delivery", "item_json", "items_json")

log = logging.getLogger("layotto.configuration")
_JSON = {"content-type": "application/json"}


def item_json(item: ConfigurationItem | None) -> dict[str, Any]:
    if item is None:
        return {}
    fields: dict[str, Any] = {}
    if item.value:
        fields["value"] = item.value
    if item.version:
        fields["version"] = item.version
    if item.metadata:
        fields["metadata"] = dict(item.metadata)
    return fields


def items_json(items: dict[str, ConfigurationItem]) -> dict[str, Any]:
    return {key: item_json(item) for key, item in items.items()}


def app_delivery(channel: AppChannel) -> Delivery:
    """POSTs updates to the app through ``channel``, one request per key, as Dapr does."""

    async def deliver(store: str, update: ConfigurationUpdate) -> None:
        body = orjson.dumps(
            {"id": update.id, "items": {key: item_json(item) for key, item in update.items.items()}},
            option=orjson.OPT_SORT_KEYS,
        )
        for key in update.items:
            path = f"/configuration/{store}/{quote(key, safe='/')}"
            try:
                response = await channel.request("POST", path, content=body, headers=_JSON)
            except HttpClientError as exc:
                log.error("error sending configuration item %s of %s to the app: %s", key, store, exc)
                continue
            if response.status_code != 200:
                log.error(
                    "error sending configuration item %s of %s to the app, status %d",
                    key,
                    store,
                    response.status_code,
                )

    return deliver
