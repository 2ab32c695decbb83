"""``pubsub.kafka``'s component: its settings (``metadata``), its producer (``producer``), its
subscriptions (``consumer``), and the topics it creates before subscribing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError
from building_blocks.pubsub.base import Feature, Handler, PublishRequest, PubSub, SubscribeRequest
from building_blocks.pubsub.kafka.consumer import KafkaSubscription
from building_blocks.pubsub.kafka.errors import describe, kafka_error
from building_blocks.pubsub.kafka.metadata import configure
from building_blocks.pubsub.kafka.producer import KafkaProducer

__all__ = ("KafkaPubSub",)

log = logging.getLogger("building_blocks.pubsub.kafka")
_rdkafka_log = logging.getLogger("building_blocks.pubsub.kafka.librdkafka")

_ADMIN_TIMEOUT = 10.0


class KafkaPubSub(PubSub):
    """One idempotent producer for publishing; one consumer (and poll thread) per subscription."""

    features = frozenset({Feature.BULK_PUBSUB})

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        config = configure(metadata)
        self._brokers = config.brokers
        self._producer_config = config.producer
        self._consumer_config = config.consumer
        self._admin_config = config.admin
        self._init_timeout = config.init_timeout
        self._ping_timeout = config.ping_timeout
        # What every subscription reads.
        self.buffer_size = config.buffer_size
        self.partition_concurrency = config.partition_concurrency
        self.consumer_group = config.consumer_group
        self.retry_interval = config.retry_interval
        self.drain_timeout = config.drain_timeout
        self.escape_headers = config.escape_headers
        self.partitions = config.partitions
        self.replication_factor = config.replication_factor
        self._producer = KafkaProducer(name, config.producer, config.publish_timeout, config.exclude_headers)
        self._opened = False
        self._subscriptions: set[KafkaSubscription] = set()
        self._known_topics: set[str] = set()

    # --- lifecycle ---------------------------------------------------------------------------------

    async def init(self) -> None:
        self._producer.open({"error_cb": self._client_error, "logger": _rdkafka_log})
        try:
            await self._list_topics(self._init_timeout)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        subscriptions = list(self._subscriptions)
        if subscriptions:
            await asyncio.gather(*(subscription.close() for subscription in subscriptions), return_exceptions=True)
        await self._producer.close()

    async def ping(self) -> None:
        await self._list_topics(self._ping_timeout)

    async def _list_topics(self, timeout: float) -> None:
        producer = self._producer.producer
        try:
            await asyncio.to_thread(producer.list_topics, None, timeout)
        except KafkaException as exc:
            raise ComponentError(f"kafka: brokers {self._brokers} not reachable: {describe(exc)}") from exc

    def _client_error(self, error: KafkaError) -> None:
        log.warning("kafka %s: %s", self.name, error.str())

    # --- publishing --------------------------------------------------------------------------------

    async def publish(self, request: PublishRequest) -> None:
        await (await self._producer.enqueue(request))

    async def bulk_publish(self, requests: Sequence[PublishRequest]) -> list[Exception | None]:
        outcomes: list[Exception | None] = [None] * len(requests)
        pending: list[tuple[int, asyncio.Future[None]]] = []
        for index, request in enumerate(requests):
            try:
                pending.append((index, await self._producer.enqueue(request)))
            except ComponentError as exc:
                outcomes[index] = exc
        for index, future in pending:
            try:
                await future
            except Exception as exc:
                outcomes[index] = exc
        return outcomes

    # --- subscribing -------------------------------------------------------------------------------

    async def subscribe(self, request: SubscribeRequest, handler: Handler) -> KafkaSubscription:
        _ = self._producer.producer  # raises when not initialised
        group = self.consumer_group or request.group or self.context.app_id
        if not group:
            raise ComponentError(f"kafka {self.name}: no consumer group (set 'consumerGroup')")
        await self._ensure_topic(request.topic)
        config = {
            **self._consumer_config,
            "group.id": group,
            "error_cb": self._client_error,
            "logger": _rdkafka_log,
        }
        subscription = KafkaSubscription(self, request.topic, group, handler, config)
        self._subscriptions.add(subscription)
        try:
            subscription.start()
        except BaseException:
            self._subscriptions.discard(subscription)
            raise
        return subscription

    def _forget(self, subscription: KafkaSubscription) -> None:
        self._subscriptions.discard(subscription)

    async def _ensure_topic(self, topic: str) -> None:
        """Creates ``topic`` when missing; an existing topic is fine, other failures only logged."""
        if topic in self._known_topics:
            return
        new_topic = NewTopic(topic, num_partitions=self.partitions, replication_factor=self.replication_factor)

        def create() -> None:
            config: dict[str, Any] = {**self._admin_config, "logger": _rdkafka_log}
            admin = AdminClient(config)
            futures = admin.create_topics([new_topic], request_timeout=_ADMIN_TIMEOUT)
            futures[topic].result()

        try:
            await asyncio.to_thread(create)
        except KafkaException as exc:
            error = kafka_error(exc)
            code = error.code() if error is not None else None
            if code == KafkaError.TOPIC_EXCEPTION:
                raise ComponentError(f"kafka: invalid topic name {topic!r}: {describe(exc)}") from exc
            if code != KafkaError.TOPIC_ALREADY_EXISTS:
                log.warning("kafka %s: could not create topic %r: %s", self.name, topic, describe(exc))
                return
        self._known_topics.add(topic)
