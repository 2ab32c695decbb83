"""The Pub/sub block's contract: what a broker component does, and the delivery guarantee it gives.

Delivery is at-least-once. A component calls the subscription's handler for each message and acknowledges
the message to its broker only after the handler returned normally. If the handler raises, the message is
not acknowledged and the component delivers it again later (Redis: it stays pending and is re-claimed
after ``processingTimeout``; Kafka: the partition does not move past it; in-memory: it is re-queued after
``redeliverInterval``). A crash between receipt and acknowledgement therefore means redelivery, not loss.

Retries inside the sidecar (resiliency policies), dead-lettering and the app's answers are the block's
business (``building_blocks.pubsub.block``), not the component's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from building_blocks._common.cooperative import pause
from building_blocks.component import Component

__all__ = (
    "BulkPublishEntry",
    "Feature",
    "Handler",
    "Message",
    "PubSub",
    "PublishRequest",
    "SubscribeRequest",
    "Subscription",
)


class Feature(StrEnum):
    SUBSCRIBE_WILDCARDS = "SUBSCRIBE_WILDCARDS"
    MESSAGE_TTL = "MESSAGE_TTL"
    BULK_PUBSUB = "BULK_PUBSUB"


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """``data`` is the exact bytes to put on the broker (a CloudEvent's JSON, or a raw payload)."""

    topic: str
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class BulkPublishEntry:
    """One entry of a bulk publish, as the app sent it. ``event`` is its bytes, or None when the event does
    not fit its content type (the HTTP API's JSON can say so; the block reports it in entry order)."""

    entry_id: str
    event: bytes | None
    content_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    """A message as received: the broker's bytes, its metadata (headers), and where it came from."""

    topic: str
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: Broker-specific identity (stream entry id, partition/offset...), for logs.
    id: str = ""


#: Returns normally = acknowledge; raises = do not acknowledge (the component redelivers later).
Handler = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """``group`` is the consumer group: sidecars with the same group share the messages; different
    groups each get every message. ``metadata`` is the subscription's (e.g. ``rawPayload``)."""

    topic: str
    group: str
    metadata: Mapping[str, str] = field(default_factory=dict)


class Subscription:
    """A running subscription; ``close()`` stops pulling, lets in-flight handlers finish, and returns."""

    async def close(self) -> None:
        raise NotImplementedError


class PubSub(Component):
    """Base class of pub/sub components.

    Subclasses implement ``publish`` and ``subscribe`` and declare ``features``. ``bulk_publish`` defaults
    to one ``publish`` per entry. Errors: ``ComponentError`` for broker failures.
    """

    features: frozenset[Feature] = frozenset()

    async def publish(self, request: PublishRequest) -> None:
        raise NotImplementedError

    async def bulk_publish(self, requests: Sequence[PublishRequest]) -> list[Exception | None]:
        """One outcome per request, in order: None when published, the error otherwise. A publish that never
        waits (an in-memory queue with room) does not yield, so the loop is yielded every ``SLICE`` entries."""
        outcomes: list[Exception | None] = []
        for done, request in enumerate(requests):
            await pause(done)
            try:
                await self.publish(request)
            except Exception as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    async def subscribe(self, request: SubscribeRequest, handler: Handler) -> Subscription:
        """Start delivering ``request.topic`` to ``handler`` until the subscription is closed."""
        raise NotImplementedError
