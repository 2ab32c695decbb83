"""Delivering a subscription's messages to the app, and deciding what the broker should be told.

For each message: build the event (or the raw-payload envelope), drop it if expired, pick the route,
deliver through the ``Postman`` (the app channel), and act on the app's answer:

    SUCCESS            acknowledge
    DROP / NOT_FOUND   acknowledge, after publishing to the dead-letter topic when one is set
    RETRY / failure    retry in the sidecar per the inbound resiliency policy; when retries are used up,
                       dead-letter and acknowledge if a dead-letter topic is set, otherwise raise so the
                       component redelivers later (at-least-once: nothing is acknowledged unhandled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import orjson

from building_blocks import jsoncodec
from building_blocks.errors import ComponentError
from building_blocks.pubsub.base import Message, PublishRequest, PubSub, SubscribeRequest, Subscription
from building_blocks.pubsub.cloudevents import raw_payload_event
from building_blocks.pubsub.subscriptions import BulkSettings, SubscriptionSpec
from building_blocks.resiliency import TargetPolicy

__all__ = ("DeliveryFailed", "DeliveryStatus", "Postman", "TopicSubscriber")

log = logging.getLogger("layotto.pubsub")
_SKIPPED_HEADERS = {"content-type", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade", "te"}


class DeliveryStatus(StrEnum):
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"
    NOT_FOUND = "NOT_FOUND"


class Postman(Protocol):
    """Sends events to the app (implemented over HTTP by ``app.postman``)."""

    async def deliver(
        self, path: str, body: bytes, content_type: str, headers: Mapping[str, str], timeout: float | None
    ) -> DeliveryStatus: ...

    async def deliver_bulk(
        self, path: str, envelope: bytes, entry_ids: Sequence[str], timeout: float | None
    ) -> dict[str, DeliveryStatus]: ...


class DeliveryFailed(ComponentError):
    """The app did not take the message; the component must deliver it again later."""


def _expired(event: Mapping[str, Any]) -> bool:
    expiration = event.get("expiration")
    if not isinstance(expiration, str):
        return False
    try:
        moment = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment <= datetime.now(UTC)


class _Prepared:
    """A message made ready for the app: its event, the body to send, headers and route."""

    __slots__ = ("body", "content_type", "event", "headers", "message", "path")

    def __init__(self, spec: SubscriptionSpec, message: Message) -> None:
        self.message = message
        if spec.raw_payload:
            self.event: dict[str, Any] = raw_payload_event(
                message.data, topic=spec.topic, pubsub=spec.pubsub, metadata=message.metadata
            )
            self.body = orjson.dumps(self.event)
        else:
            try:  # as deep as publish accepts (Dapr's 10,000 levels): orjson alone stops at 1,024
                event = jsoncodec.loads(message.data)
            except ValueError:
                raise DeliveryFailed(f"message {message.id} on {spec.topic} is not a CloudEvent") from None
            if not isinstance(event, dict):
                raise DeliveryFailed(f"message {message.id} on {spec.topic} is not a CloudEvent")
            self.event = event
            self.body = message.data
        self.content_type = "application/cloudevents+json"
        headers = {k: v for k, v in message.metadata.items() if k.lower() not in _SKIPPED_HEADERS}
        headers["pubsubname"] = spec.pubsub
        for name in ("traceparent", "tracestate"):
            value = self.event.get(name)
            if isinstance(value, str) and value:
                headers[name] = value
        self.headers = headers
        self.path = spec.route(self.event)


class TopicSubscriber:
    """One active subscription: receives from the component, delivers to the app."""

    def __init__(
        self, spec: SubscriptionSpec, pubsub: PubSub, group: str, postman: Postman, policy: TargetPolicy
    ) -> None:
        self.spec = spec
        self.pubsub = pubsub
        self.group = group
        self.postman = postman
        self.policy = policy
        self._subscription: Subscription | None = None
        self._batcher = _Batcher(self, spec.bulk) if spec.bulk is not None else None

    async def start(self) -> None:
        handler = self._batcher.handle if self._batcher is not None else self.handle
        request = SubscribeRequest(self.spec.topic, self.group, self.spec.metadata)
        self._subscription = await self.pubsub.subscribe(request, handler)

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        if self._batcher is not None:
            await self._batcher.close()

    async def dead_letter(self, message: Message, reason: str) -> bool:
        """Publish the original message to the dead-letter topic; False when there is none."""
        topic = self.spec.dead_letter_topic
        if not topic:
            return False
        await self.pubsub.publish(PublishRequest(topic, message.data, message.metadata))
        log.warning("message %s on %s sent to dead-letter topic %s: %s", message.id, self.spec.topic, topic, reason)
        return True

    async def _attempt(self, prepared: _Prepared) -> DeliveryStatus:
        assert prepared.path is not None
        try:
            return await self.postman.deliver(
                prepared.path, prepared.body, prepared.content_type, prepared.headers, self.policy.timeout
            )
        except Exception as exc:
            log.warning("delivering to %s failed: %s", prepared.path, str(exc) or type(exc).__name__)
            return DeliveryStatus.RETRY

    async def handle(self, message: Message) -> None:
        """The component's handler: returns when the message may be acknowledged, raises otherwise."""
        try:
            prepared = _Prepared(self.spec, message)
        except DeliveryFailed as exc:
            if await self.dead_letter(message, str(exc)):
                return
            raise
        if _expired(prepared.event):
            await self.dead_letter(message, "expired")
            return
        if prepared.path is None:
            await self.dead_letter(message, "no route matched")
            return
        status = await self._attempt(prepared)
        delays = iter(self.policy.retry.delays()) if self.policy.retry is not None else iter(())
        while status is DeliveryStatus.RETRY:
            delay = next(delays, None)
            if delay is None:
                break
            await asyncio.sleep(delay)
            status = await self._attempt(prepared)
        match status:
            case DeliveryStatus.SUCCESS:
                return
            case DeliveryStatus.DROP:
                log.warning("app dropped message %s on topic %s", message.id, self.spec.topic)
                await self.dead_letter(message, "dropped by the app")
            case DeliveryStatus.NOT_FOUND:
                log.error(
                    "app has no route %s for topic %s; message %s dropped", prepared.path, self.spec.topic, message.id
                )
                await self.dead_letter(message, "route not found")
            case _:
                if not await self.dead_letter(message, "retries exhausted"):
                    raise DeliveryFailed(f"app did not accept message {message.id} on topic {self.spec.topic}")


class _Batcher:
    """Bulk subscribe: collects messages into batches of at most ``max_messages``, flushed when full or
    ``max_await_seconds`` after the first message, and resolves each message by its entry's status."""

    def __init__(self, subscriber: TopicSubscriber, settings: BulkSettings) -> None:
        self.subscriber = subscriber
        self.settings = settings
        self._batch: list[tuple[_Prepared, asyncio.Future[DeliveryStatus]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def handle(self, message: Message) -> None:
        subscriber = self.subscriber
        try:
            prepared = _Prepared(subscriber.spec, message)
        except DeliveryFailed as exc:
            if await subscriber.dead_letter(message, str(exc)):
                return
            raise
        if _expired(prepared.event) or prepared.path is None:
            await subscriber.dead_letter(message, "expired" if prepared.path else "no route matched")
            return
        future: asyncio.Future[DeliveryStatus] = asyncio.get_running_loop().create_future()
        self._batch.append((prepared, future))
        if len(self._batch) >= self.settings.max_messages:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.settings.max_await_seconds, self._flush)
        status = await future
        if status is DeliveryStatus.SUCCESS:
            return
        if status in (DeliveryStatus.DROP, DeliveryStatus.NOT_FOUND):
            await subscriber.dead_letter(message, "dropped by the app")
            return
        if not await subscriber.dead_letter(message, "app asked to retry"):
            raise DeliveryFailed(f"app did not accept message {message.id} on topic {subscriber.spec.topic}")

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, []
        if batch:
            task = asyncio.ensure_future(self._send(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _send(self, batch: list[tuple[_Prepared, asyncio.Future[DeliveryStatus]]]) -> None:
        spec = self.subscriber.spec
        by_path: dict[str, list[tuple[str, _Prepared, asyncio.Future[DeliveryStatus]]]] = {}
        for prepared, future in batch:
            assert prepared.path is not None
            by_path.setdefault(prepared.path, []).append((str(uuid.uuid4()), prepared, future))
        for path, entries in by_path.items():
            envelope = {
                "id": str(uuid.uuid4()),
                "type": "com.dapr.event.sent.bulk",
                "topic": spec.topic,
                "pubsubname": spec.pubsub,
                "metadata": {},
                "entries": [
                    {
                        "entryId": entry_id,
                        "event": (
                            prepared.event.get("data_base64", "")
                            if spec.raw_payload
                            else orjson.Fragment(prepared.body)
                        ),
                        "metadata": dict(prepared.message.metadata),
                        "contentType": "application/octet-stream" if spec.raw_payload else prepared.content_type,
                    }
                    for entry_id, prepared, _ in entries
                ],
            }
            ids = [entry_id for entry_id, _, _ in entries]
            try:
                statuses = await self.subscriber.postman.deliver_bulk(
                    path, orjson.dumps(envelope), ids, self.subscriber.policy.timeout
                )
            except Exception as exc:
                log.warning("bulk delivery to %s failed: %s", path, str(exc) or type(exc).__name__)
                statuses = {}
            for entry_id, _, future in entries:
                if not future.done():
                    future.set_result(statuses.get(entry_id, DeliveryStatus.RETRY))

    async def close(self) -> None:
        self._flush()
        for task in list(self._flushes):
            with contextlib.suppress(Exception):
                await task
