"""Streaming subscriptions: ``SubscribeTopicEventsAlpha1``, the bidirectional stream the SDKs' ``subscribe()``
uses instead of an app port.

In Dapr's order: the client's first message is the initial request (pubsub, topic, metadata, dead-letter
topic); the sidecar answers with an empty ``initial_response`` once the subscription is live; then one
``event_message`` per delivery, each acknowledged by the client with ``event_processed{id, status}``. The
delivery waits for that answer, so the broker is acknowledged only after SUCCESS or DROP (at least once,
as for an app); when the stream ends, what is unanswered is redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence

from dapr.proto.runtime.v1 import appcallback_pb2
from dapr.proto.runtime.v1 import pubsub_pb2 as pb

from app.grpc.dapr.base import Context, Part
from app.grpc.events import status_of, topic_event
from building_blocks.errors import InvalidRequest
from building_blocks.pubsub.subscriber import DeliveryStatus
from building_blocks.pubsub.subscriptions import Rule, SubscriptionSpec

__all__ = ("StreamingMethods",)

Incoming = AsyncIterator[pb.SubscribeTopicEventsRequestAlpha1]
_PATH = "/"  # a stream has one route


class StreamPostman:
    """Hands deliveries to the stream and waits for the client's answer to each."""

    def __init__(self) -> None:
        self.outgoing: asyncio.Queue[appcallback_pb2.TopicEventRequest | None] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[DeliveryStatus]] = {}
        self._closed = False

    async def deliver(
        self, path: str, body: bytes, content_type: str, headers: Mapping[str, str], timeout: float | None
    ) -> DeliveryStatus:
        if self._closed:
            return DeliveryStatus.RETRY
        event = topic_event(body, path)
        answer = asyncio.get_running_loop().create_future()
        self._pending[event.id] = answer
        try:
            self.outgoing.put_nowait(event)
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            return DeliveryStatus.RETRY
        finally:
            if self._pending.get(event.id) is answer:
                del self._pending[event.id]

    async def deliver_bulk(
        self, path: str, envelope: bytes, entry_ids: Sequence[str], timeout: float | None
    ) -> dict[str, DeliveryStatus]:
        return {}  # streams are not bulk subscriptions: every entry is retried one by one

    def answered(self, processed: pb.SubscribeTopicEventsRequestProcessedAlpha1) -> None:
        answer = self._pending.get(processed.id)
        if answer is not None and not answer.done():
            answer.set_result(status_of(processed.status))

    def close(self) -> None:
        """The stream ended: what waits is redelivered, what comes is refused."""
        self._closed = True
        for answer in self._pending.values():
            if not answer.done():
                answer.set_result(DeliveryStatus.RETRY)
        self.outgoing.put_nowait(None)


def _spec(first: pb.SubscribeTopicEventsRequestAlpha1 | None) -> SubscriptionSpec:
    if first is None or not first.HasField("initial_request"):
        raise InvalidRequest("initial request is required")
    initial = first.initial_request
    if not initial.pubsub_name:
        raise InvalidRequest("pubsubName is required")
    if not initial.topic:
        raise InvalidRequest("topic is required")
    return SubscriptionSpec(
        initial.pubsub_name,
        initial.topic,
        (Rule.compile("", _PATH),),
        initial.dead_letter_topic,
        dict(initial.metadata),
        kind="STREAMING",
    )


class StreamingMethods(Part):
    async def SubscribeTopicEventsAlpha1(
        self, requests: Incoming, context: Context
    ) -> AsyncIterator[pb.SubscribeTopicEventsResponseAlpha1]:
        spec = _spec(await anext(aiter(requests), None))
        postman = StreamPostman()
        pubsub = self.runtime.pubsub
        subscriber = await pubsub.subscribe_stream(spec, postman, self.runtime.core.resiliency)
        reader = asyncio.get_running_loop().create_task(_read_answers(requests, postman))
        try:
            yield pb.SubscribeTopicEventsResponseAlpha1(initial_response=pb.SubscribeTopicEventsResponseInitialAlpha1())
            while (event := await postman.outgoing.get()) is not None:
                yield pb.SubscribeTopicEventsResponseAlpha1(event_message=event)
            if reader.done() and (error := reader.exception()) is not None:
                raise error
        finally:
            postman.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            await pubsub.end_stream(subscriber)


async def _read_answers(requests: Incoming, postman: StreamPostman) -> None:
    try:
        async for request in requests:
            if request.HasField("initial_request"):
                raise InvalidRequest("duplicate initial request received")
            if request.HasField("event_processed"):
                postman.answered(request.event_processed)
    finally:
        postman.close()
