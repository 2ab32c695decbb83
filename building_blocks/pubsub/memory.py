"""``pubsub.in-memory``: topics inside this sidecar process; the embedded default.

Features: none claimed. Metadata: ``redeliverInterval`` (1s: a message whose handler failed is queued
again after it), ``queueDepth`` (10000: publishers wait when a group's queue is full), ``concurrency``
(10 messages handled at once per subscription).

Consumer groups work as with a broker: subscriptions of one group share the group's messages; each group
gets every message published after it first subscribed. Messages do not outlive the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass

from building_blocks._common.metadata import PUBSUB, duration, integer, parse
from building_blocks.component import ComponentContext, Metadata
from building_blocks.pubsub.base import Handler, Message, PublishRequest, PubSub, SubscribeRequest, Subscription

__all__ = ("InMemoryPubSub",)

log = logging.getLogger(__name__)


class _MemorySubscription(Subscription):
    def __init__(self, queue: asyncio.Queue[Message], handler: Handler, concurrency: int, redeliver: float) -> None:
        self._queue = queue
        self._handler = handler
        self._redeliver = redeliver
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._requeues: dict[asyncio.Task[None], Message] = {}
        self._pump = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                message = await self._queue.get()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            task = asyncio.create_task(self._process(message))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _process(self, message: Message) -> None:
        try:
            await self._handler(message)
        except Exception as exc:
            log.info("message %s not handled (%s); redelivering in %ss", message.id, exc, self._redeliver)
            requeue = asyncio.create_task(self._requeue(message))
            self._requeues[requeue] = message
            requeue.add_done_callback(self._forget)
        finally:
            self._slots.release()

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._requeues.pop(task, None)

    async def _requeue(self, message: Message) -> None:
        await asyncio.sleep(self._redeliver)
        await self._queue.put(message)

    async def close(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        # Failed messages waiting to be redelivered go back to the queue now, for the group's other members.
        for requeue, message in list(self._requeues.items()):
            requeue.cancel()
            await self._queue.put(message)
        self._requeues.clear()


@dataclass(frozen=True, slots=True)
class InMemoryPubSubMetadata:
    redeliver_interval: float = duration("redeliverInterval", 1.0)
    queue_depth: int = integer("queueDepth", 10000)
    concurrency: int = integer("concurrency", 10)


class InMemoryPubSub(PubSub):
    """Topics as per-group asyncio queues."""

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(InMemoryPubSubMetadata, metadata, PUBSUB)
        self._redeliver = settings.redeliver_interval
        self._depth = settings.queue_depth
        self._concurrency = max(1, settings.concurrency)
        self._groups: dict[str, dict[str, asyncio.Queue[Message]]] = {}
        self._subscriptions: list[_MemorySubscription] = []
        self._ids = itertools.count(1)

    async def publish(self, request: PublishRequest) -> None:
        message = Message(request.topic, request.data, dict(request.metadata), str(next(self._ids)))
        for queue in self._groups.get(request.topic, {}).values():
            await queue.put(message)

    async def subscribe(self, request: SubscribeRequest, handler: Handler) -> Subscription:
        groups = self._groups.setdefault(request.topic, {})
        queue = groups.setdefault(request.group, asyncio.Queue(self._depth))
        subscription = _MemorySubscription(queue, handler, self._concurrency, self._redeliver)
        self._subscriptions.append(subscription)
        return subscription

    async def close(self) -> None:
        for subscription in self._subscriptions:
            await subscription.close()
        self._subscriptions.clear()
