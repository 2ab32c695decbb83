"""``configuration.in-memory``: items in this process only (tests, demos); no metadata.

Every save and delete notifies the subscriptions at once. Nothing survives a restart and nothing is
shared with other sidecars.
"""

from __future__ import annotations

from building_blocks._common.metadata import CONFIGURATION, NoMetadata, parse
from building_blocks.component import ComponentContext, Metadata
from building_blocks.configuration.base import (
    ConfigurationItem,
    ConfigurationStore,
    DeleteRequest,
    GetRequest,
    SaveRequest,
    Subscription,
    next_version,
)

__all__ = ("InMemoryConfigurationStore",)


class InMemoryConfigurationStore(ConfigurationStore):
    """A dict of items."""

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        parse(NoMetadata, metadata, CONFIGURATION)
        self._items: dict[str, ConfigurationItem] = {}

    async def get(self, request: GetRequest) -> dict[str, ConfigurationItem]:
        if not request.keys:
            return dict(self._items)
        return {key: self._items[key] for key in request.keys if key in self._items}

    async def save(self, request: SaveRequest) -> None:
        for entry in request.items:
            previous = self._items.get(entry.key)
            item = ConfigurationItem(
                entry.value, next_version(previous.version if previous else None), dict(entry.metadata)
            )
            self._items[entry.key] = item
            self._publish(entry.key, item)

    async def delete(self, request: DeleteRequest) -> None:
        for key in request.keys:
            if self._items.pop(key, None) is not None:
                self._publish(key, None)

    async def _watch(self, subscription: Subscription) -> None:
        """Changes are published by ``save`` and ``delete`` themselves."""

    async def _unwatch(self, subscription: Subscription) -> None:
        """Nothing to release."""
