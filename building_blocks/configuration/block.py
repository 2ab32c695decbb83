"""The Configuration building block: Dapr's configuration API (plus Layotto's writes) on the loaded stores.

It takes typed requests (decoding is the front's), resolves stores by name, validates requests, calls the
stores through ``Block.operation`` (so a front reports their failures with the operation's Dapr code) and
owns the subscriptions made through the API: each one
has its own ordered outbox towards the app, so a slow app or a failed delivery for one subscription
never delays or cancels another.

Delivering to the app is not the block's business: ``delivery`` (set by the runtime when the sidecar has
an app channel) is called with the store name and one update; without it, subscribing fails as in Dapr.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from building_blocks.block import Block
from building_blocks.component import ComponentContext
from building_blocks.configuration.base import (
    ConfigurationItem,
    ConfigurationStore,
    ConfigurationUpdate,
    DeleteRequest,
    GetRequest,
    SaveRequest,
    SubscribeRequest,
    Subscription,
)
from building_blocks.errors import AppChannelMissing, InvalidRequest, NotFoundInStore, Operation

__all__ = ("ConfigurationBlock", "Delivery")

log = logging.getLogger(__name__)

#: Sends one update of store ``name`` to the app: ``await delivery(name, update)``.
Delivery = Callable[[str, ConfigurationUpdate], Awaitable[None]]


class _Outbox:
    """The updates of one subscription, delivered one at a time, in order, by a task that exists only while
    there is something to deliver."""

    def __init__(self, store: str, delivery: Delivery) -> None:
        self._store = store
        self._delivery = delivery
        self._pending: collections.deque[ConfigurationUpdate] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def push(self, update: ConfigurationUpdate) -> None:
        if self._closed:
            return
        self._pending.append(update)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name=f"configuration-{update.id}")

    async def _drain(self) -> None:
        try:
            while self._pending:
                update = self._pending.popleft()
                try:
                    await self._delivery(self._store, update)
                except Exception:
                    log.exception("delivering a configuration update of %s to the app failed", self._store)
        finally:
            self._task = None

    def close(self, _: object = None) -> None:
        """Drop what is pending and stop a delivery in flight."""
        self._closed = True
        self._pending.clear()
        if self._task is not None:
            self._task.cancel()


class ConfigurationBlock(Block[ConfigurationStore, None]):
    """All loaded configuration stores, and the configuration API's operations on them."""

    kind = "configuration store"
    type_prefix = "configuration"
    component_base = ConfigurationStore

    def __init__(self, context: ComponentContext, delivery: Delivery | None = None) -> None:
        super().__init__(context)
        self.delivery = delivery
        #: The subscriptions made through the API, by (store name, subscription id).
        self._subscriptions: dict[tuple[str, str], Subscription] = {}

    def check_store(self, name: str) -> None:
        """Raise as Dapr does, before the request body is read, when ``name`` is not a loaded store."""
        self.component(name)

    async def get(self, name: str, request: GetRequest) -> dict[str, ConfigurationItem]:
        store = self.component(name)
        return await self.operation(Operation.CONFIGURATION_GET, name, " ".join(request.keys), store.get, request)

    async def subscribe(
        self,
        name: str,
        request: SubscribeRequest,
        delivery: Delivery | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> str:
        """Start a subscription whose updates go to the app (or to ``delivery``: a front's stream); its id.
        ``on_end`` is called once when the subscription ends (unsubscribed, or its store closed)."""
        store = self.component(name)
        delivery = delivery or self.delivery
        if delivery is None:
            raise AppChannelMissing("subscribe to configuration updates")
        outbox = _Outbox(name, delivery)
        subscription = await self.operation(
            Operation.CONFIGURATION_SUBSCRIBE, name, " ".join(request.keys), store.subscribe, request, outbox.push
        )
        self._subscriptions[(name, subscription.id)] = subscription
        subscription.on_close(outbox.close)
        subscription.on_close(self._ended)
        if on_end is not None:
            subscription.on_close(lambda _: on_end())
        return subscription.id

    def _ended(self, subscription: Subscription) -> None:
        """Forget a subscription that ended (unsubscribed, or its store closed with the runtime)."""
        self._subscriptions.pop((subscription.store.name, subscription.id), None)

    async def unsubscribe(self, name: str, subscription_id: str) -> None:
        """End one subscription; the others, on this store or any other, are untouched."""
        self.component(name)
        subscription = self._subscriptions.get((name, subscription_id))
        await self.operation(
            Operation.CONFIGURATION_UNSUBSCRIBE, name, subscription_id, self._close, subscription_id, subscription
        )

    @staticmethod
    async def _close(subscription_id: str, subscription: Subscription | None) -> None:
        """The store's part of ``unsubscribe``: an unknown id is the store's "not found", as in Dapr."""
        if subscription is None:
            raise NotFoundInStore(f"subscription with id {subscription_id} does not exist")
        await subscription.close()

    async def save(self, name: str, request: SaveRequest) -> None:
        """Layotto's SaveConfiguration (not in Dapr): at least one item, each with a key."""
        store = self.component(name)
        if not request.items:
            raise InvalidRequest('"items" must be a non-empty list')
        if not all(item.key for item in request.items):
            raise InvalidRequest('"key" is a required field')
        keys = " ".join(item.key for item in request.items)
        await self.operation(Operation.CONFIGURATION_SAVE, name, keys, store.save, request)

    async def delete(self, name: str, request: DeleteRequest) -> None:
        """Layotto's DeleteConfiguration (not in Dapr); at least one key is required."""
        store = self.component(name)
        if not request.keys:
            raise InvalidRequest("at least one key is required")
        keys = " ".join(request.keys)
        await self.operation(Operation.CONFIGURATION_DELETE, name, keys, store.delete, request)
