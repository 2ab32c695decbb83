"""The Configuration block's contract: items, requests, updates, subscriptions and the store base class.

A configuration store holds items by key; each item has a ``value``, a ``version`` and string ``metadata``.
Reads follow Dapr's configuration API; writes (``save``/``delete``) are Layotto's extension, where the
store assigns versions (``"1"``, then the previous numeric version + 1).

Watching: ``subscribe(request, handler)`` returns a ``Subscription`` with its own id. Whenever a watched
key changes (whoever changed it: this sidecar, another one, or a client writing to the backend directly),
the store calls ``handler`` with a ``ConfigurationUpdate`` for that key (``None`` as the item when the key
was deleted). Handlers are called on the event loop and must not block: they queue the work.
Subscriptions are independent: closing one never affects another; closing the store closes them all.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from building_blocks.component import Component, ComponentContext, Metadata
from building_blocks.empty import NO_METADATA  # the one shared empty mapping, a safe dataclass default

__all__ = (
    "NO_METADATA",
    "ConfigurationItem",
    "ConfigurationStore",
    "ConfigurationUpdate",
    "DeleteRequest",
    "GetRequest",
    "SaveItem",
    "SaveRequest",
    "SubscribeRequest",
    "Subscription",
    "UpdateHandler",
    "next_version",
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConfigurationItem:
    value: str
    version: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConfigurationUpdate:
    """What changed for subscription ``id``: key -> new item, or ``None`` when the key was deleted."""

    id: str
    items: Mapping[str, ConfigurationItem | None]


UpdateHandler = Callable[[ConfigurationUpdate], None]


@dataclass(frozen=True, slots=True)
class GetRequest:
    """``keys`` empty = every item of the store."""

    keys: Sequence[str] = ()
    metadata: Mapping[str, str] = NO_METADATA


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """``keys`` empty = every key of the store, including keys created later."""

    keys: Sequence[str] = ()
    metadata: Mapping[str, str] = NO_METADATA


@dataclass(frozen=True, slots=True)
class SaveItem:
    key: str
    value: str
    metadata: Mapping[str, str] = NO_METADATA


@dataclass(frozen=True, slots=True)
class SaveRequest:
    items: Sequence[SaveItem]
    metadata: Mapping[str, str] = NO_METADATA


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    keys: Sequence[str]
    metadata: Mapping[str, str] = NO_METADATA


def next_version(*current: str | None) -> str:
    """The version a save assigns: one more than the highest numeric current version, else ``"1"``."""
    highest = 0
    for version in current:
        try:
            highest = max(highest, int(version or ""))
        except ValueError:
            continue
    return str(highest + 1)


class Subscription:
    """One subscriber's watch on some keys (or all keys) of a store; closed on its own."""

    def __init__(
        self, store: ConfigurationStore, keys: Sequence[str], metadata: Mapping[str, str], handler: UpdateHandler
    ) -> None:
        self.id = str(uuid.uuid4())
        self.store = store
        self.keys = frozenset(keys)
        self.metadata = metadata
        self.closed = False
        self._handler = handler
        self._on_close: list[Callable[[Subscription], None]] = []

    @property
    def all_keys(self) -> bool:
        return not self.keys

    def wants(self, key: str) -> bool:
        return not self.keys or key in self.keys

    def notify(self, key: str, item: ConfigurationItem | None) -> None:
        """Hand one changed key to the subscriber; never raises."""
        if self.closed:
            return
        try:
            self._handler(ConfigurationUpdate(self.id, {key: item}))
        except Exception:
            log.exception("configuration subscription %s: the update handler failed", self.id)

    def on_close(self, callback: Callable[[Subscription], None]) -> None:
        """Call ``callback`` once when this subscription ends (unsubscribed or its store closed)."""
        if self.closed:
            callback(self)
        else:
            self._on_close.append(callback)

    async def close(self) -> None:
        """Stop this subscription only. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            await self.store._release(self)
        finally:
            callbacks, self._on_close = self._on_close, []
            for callback in callbacks:
                callback(self)


class ConfigurationStore(Component):
    """Base class of configuration stores.

    Subclasses implement ``get``, ``save``, ``delete`` and the two watch hooks: ``_watch`` (called when a
    subscription starts; it returns once changes are being observed for it) and ``_unwatch`` (called
    when one ends). They report changes with ``_publish``. ``close`` ends every subscription first.
    """

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        self.subscriptions: dict[str, Subscription] = {}

    async def get(self, request: GetRequest) -> dict[str, ConfigurationItem]:
        """The items of the keys asked for that exist (every item when no key is given)."""
        raise NotImplementedError

    async def save(self, request: SaveRequest) -> None:
        """Create or replace items; the store assigns each a new version."""
        raise NotImplementedError

    async def delete(self, request: DeleteRequest) -> None:
        """Delete items; missing keys are ignored."""
        raise NotImplementedError

    async def subscribe(self, request: SubscribeRequest, handler: UpdateHandler) -> Subscription:
        subscription = Subscription(self, request.keys, request.metadata, handler)
        self.subscriptions[subscription.id] = subscription
        try:
            await self._watch(subscription)
        except BaseException:
            subscription.closed = True
            self.subscriptions.pop(subscription.id, None)
            raise
        return subscription

    async def _release(self, subscription: Subscription) -> None:
        if self.subscriptions.pop(subscription.id, None) is not None:
            try:
                await self._unwatch(subscription)
            except Exception as exc:  # the subscription is over locally whatever the backend says
                log.warning("%s: ending subscription %s: %s", self.name, subscription.id, exc)

    async def _watch(self, subscription: Subscription) -> None:
        raise NotImplementedError

    async def _unwatch(self, subscription: Subscription) -> None:
        raise NotImplementedError

    def _publish(
        self,
        key: str,
        item: ConfigurationItem | None,
        accept: Callable[[Subscription], bool] | None = None,
    ) -> None:
        """Notify every subscription that watches ``key`` (and passes ``accept``, when given)."""
        for subscription in list(self.subscriptions.values()):
            if subscription.wants(key) and (accept is None or accept(subscription)):
                subscription.notify(key, item)

    async def close(self) -> None:
        for subscription in list(self.subscriptions.values()):
            await subscription.close()
