"""``pubsub.kafka``: Dapr's Kafka pub/sub on librdkafka (confluent-kafka).

Features: BULK_PUBSUB (``bulk_publish`` produces every entry, then awaits every delivery report).

Publishing: one idempotent producer (``enable.idempotence``, ``acks=all``) per component, made in
``init()``. ``publish`` hands the message to librdkafka and awaits its delivery report without blocking
the event loop: a background thread calls ``producer.poll``, whose delivery callback resolves the
request's future through ``loop.call_soon_threadsafe``. ``linger.ms`` is 0, as Dapr's Sarama producer
sends at once: a message leaves as soon as a request slot is free (what queues meanwhile is batched),
which takes librdkafka's default 5 ms of batching delay off every publish. Request metadata
``partitionKey`` (or ``__key`` or ``key``) becomes the record key; every other entry becomes a record
header.

Subscribing: each subscription owns a ``Consumer`` of its group (``consumerGroup``, else the request's
group) with ``enable.auto.commit=false``, on a topic created first if missing (``partitions``
partitions), so subscribing before anyone publishes works. A worker thread polls the consumer (short
blocking polls: an idle subscription costs a few wake-ups a second and no CPU) and does every consumer
call (confluent-kafka serializes them with its polls). Received messages go to the event loop, into one
queue per assigned partition. A partition's messages are handled in order, one at a time (with
``partitionConcurrency`` n > 1: up to n consecutive ones at once). A message's offset is committed only
after its handler returned normally and every earlier message of its partition did too, so the
committed offset never passes an unprocessed message. A handler that raises is called again for the
same message, in place, after a backoff (``consumeRetryInterval``, 100ms by default, doubling up to
5s); the partition waits for it. A crash (even ``kill -9``) therefore loses nothing: the group
redelivers from the last commit.

Message metadata: the record's headers, plus ``__key`` and ``partitionKey`` (the record key, when it has
one), ``__topic``, ``__partition``, ``__offset`` and ``__timestamp`` (milliseconds).

Rebalances: on revoke, the partitions' queued messages are dropped, their in-flight handlers get
``drainTimeout`` to finish, finished work is committed synchronously while the partitions are still
owned, and nothing is committed for them afterwards; lost partitions are dropped without committing.
Backpressure: a partition with ``channelBufferSize`` messages received but not finished is paused until
half of them are done, and librdkafka's prefetch is bounded (``queued.max.messages.kbytes``), so a slow
app does not grow memory. ``Subscription.close()`` stops polling, lets in-flight handlers finish (up to
``drainTimeout``; then they are cancelled and their messages stay uncommitted), commits, and closes the
consumer. The component's ``close()`` closes its subscriptions and flushes the producer.

Metadata (Dapr's names): ``brokers`` (required, ``host:port,...``); ``authType`` (required: ``none``,
``password`` = SASL with ``saslUsername``, ``saslPassword``, ``saslMechanism`` ``PLAINTEXT`` (default) /
``SHA-256`` / ``SHA-512``; ``mtls`` = TLS client certificate ``clientCert`` + ``clientKey``;
``certificate`` = TLS with ``caCert``; the legacy ``authRequired`` is mapped as Dapr does; OIDC and AWS
IAM are not supported); TLS is on except with ``authType: none`` or ``disableTls: true``; ``caCert``,
``skipVerify``; ``consumerGroup`` (else ``consumerID``, else the subscription's group); ``clientID``
(``layotto``); ``initialOffset`` (``newest`` | ``oldest``: where a group without a commit starts;
``newest`` is resolved at the first fetch after the group assigned the partition, about 3 s after
subscribing, so what is published before that is not delivered to a new group);
``maxMessageBytes``; ``sessionTimeout`` (6s) and ``heartbeatInterval`` (500ms), short so group joins
and rebalances are quick; ``clientConnectionTopicMetadataRefreshInterval`` (1s);
``consumerGroupRebalanceStrategy`` (``range`` | ``roundrobin`` | ``sticky`` = cooperative-sticky);
``consumerFetchMin`` (1), ``consumerFetchDefault`` (1MiB, per partition); ``channelBufferSize`` (256);
``consumeRetryInterval`` (100ms); ``compression`` (``none`` | ``gzip`` | ``snappy`` | ``lz4`` |
``zstd``); ``producerRequiredAcks`` (``all``; ``1`` or ``0`` turn idempotence off);
``producerRetryMax``; ``dialTimeout``; ``readTimeout`` / ``writeTimeout``; ``metadataTimeout`` (of the
broker check in ``init()`` (10s) and ``ping()`` (5s)); ``escapeHeaders`` (false:
received header values are URL-escaped when true); ``excludeHeaderMetaRegex`` (metadata names not sent
as headers). Extensions: ``partitions`` (4) and ``replicationFactor`` (broker default) of created
topics; ``partitionConcurrency`` (1); ``drainTimeout`` (10s); ``publishTimeout`` (30s, librdkafka's
``message.timeout.ms``); any ``librdkafka.<property>`` is passed to every client as ``<property>`` (a
property of the other client kind only makes librdkafka log a warning), e.g. ``fetch.wait.max.ms``
(100 here, so a message arrives within ~50 ms even from brokers that hold every fetch that long).
``consumeRetryEnabled`` and ``version`` are accepted and ignored (retrying is always on; librdkafka
negotiates the protocol).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote_plus

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka import Message as KafkaMessage
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError, SpecError
from building_blocks.pubsub.base import (
    Feature,
    Handler,
    Message,
    PublishRequest,
    PubSub,
    SubscribeRequest,
    Subscription,
)

__all__ = ("KafkaPubSub", "KafkaSubscription")

log = logging.getLogger(__name__)
_rdkafka_log = logging.getLogger(__name__ + ".librdkafka")

_POLL_INTERVAL = 0.2  # seconds a consumer poll blocks: bounds commit and close latency, ~5 wake-ups/s idle
_PRODUCER_POLL = 0.5  # seconds a producer poll blocks (it returns at once when a report arrives)
_BACKOFF_MAX = 5.0  # seconds between two calls of a failing handler, at most
_PING_TIMEOUT = 5.0
_INIT_TIMEOUT = 10.0
_FLUSH_TIMEOUT = 10.0
_ADMIN_TIMEOUT = 10.0
_ERROR_LOG_INTERVAL = 60.0  # seconds between two logs of the same consumer error code

#: Request metadata naming the record key; they are not sent as headers.
_KEY_NAMES = frozenset({"partitionKey", "__key", "key"})

_SASL_MECHANISMS = {
    "": "PLAIN",
    "PLAINTEXT": "PLAIN",
    "PLAIN": "PLAIN",
    "SHA-256": "SCRAM-SHA-256",
    "SCRAM-SHA-256": "SCRAM-SHA-256",
    "SHA-512": "SCRAM-SHA-512",
    "SCRAM-SHA-512": "SCRAM-SHA-512",
}
_ACKS = {"all": "all", "-1": "all", "waitforall": "all", "1": "1", "waitforlocal": "1", "0": "0", "noresponse": "0"}
_COMPRESSIONS = frozenset({"none", "gzip", "snappy", "lz4", "zstd"})
_STRATEGIES = {"range": "range", "roundrobin": "roundrobin", "sticky": "cooperative-sticky"}
_OFFSET_RESETS = {"": "latest", "newest": "latest", "oldest": "earliest"}
_UNSUPPORTED_AUTH = ("oidc", "oidc_private_key_jwt", "awsiam")
_PASSTHROUGH = "librdkafka."


def _ms(seconds: float) -> int:
    return max(round(seconds * 1000), 0)


def _kafka_error(exc: BaseException) -> KafkaError | None:
    cause = exc.args[0] if exc.args else None
    return cause if isinstance(cause, KafkaError) else None


def _describe(exc: BaseException) -> str:
    error = _kafka_error(exc)
    return error.str() if error is not None else (str(exc) or type(exc).__name__)


def _is_pem(text: str) -> bool:
    return "-----BEGIN " in text and "-----END " in text


class KafkaPubSub(PubSub):
    """One idempotent producer for publishing; one consumer (and poll thread) per subscription."""

    features = frozenset({Feature.BULK_PUBSUB})

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        meta = self.metadata
        brokers = [broker.strip() for broker in meta.text("brokers", required=True).split(",") if broker.strip()]
        if not brokers:
            raise self._spec_error("kafka error: missing 'brokers' attribute")
        self._brokers = ",".join(brokers)

        common: dict[str, Any] = {
            "bootstrap.servers": self._brokers,
            "client.id": meta.text("clientID") or "layotto",
            "topic.metadata.refresh.interval.ms": _ms(
                meta.duration("clientConnectionTopicMetadataRefreshInterval", 1.0) or 1.0
            ),
            "socket.keepalive.enable": True,
            "socket.connection.setup.timeout.ms": _ms(meta.duration("dialTimeout", 30.0) or 30.0),
            **self._security(meta),
        }
        socket_timeout = max(meta.duration("readTimeout", 0.0), meta.duration("writeTimeout", 0.0))
        if socket_timeout > 0:
            common["socket.timeout.ms"] = max(_ms(socket_timeout), 10)
        passthrough = {
            name[len(_PASSTHROUGH) :]: value
            for name, value in meta.items()
            if name.lower().startswith(_PASSTHROUGH) and len(name) > len(_PASSTHROUGH)
        }

        # Producer.
        acks = _ACKS.get(meta.text("producerRequiredAcks", "all").strip().lower())
        if acks is None:
            raise self._spec_error("metadata 'producerRequiredAcks' must be all, 1 or 0")
        compression = meta.text("compression", "none").strip().lower()
        if compression not in _COMPRESSIONS:
            raise self._spec_error(f"metadata 'compression' must be one of {', '.join(sorted(_COMPRESSIONS))}")
        metadata_timeout = meta.duration("metadataTimeout", 0.0)
        self._init_timeout = metadata_timeout if metadata_timeout > 0 else _INIT_TIMEOUT
        self._ping_timeout = metadata_timeout if metadata_timeout > 0 else _PING_TIMEOUT
        self._publish_timeout = meta.duration("publishTimeout", 30.0)
        if self._publish_timeout <= 0:
            raise self._spec_error("metadata 'publishTimeout' must be positive")
        producer: dict[str, Any] = {
            **common,
            "enable.idempotence": acks == "all",
            "acks": acks,
            "compression.type": compression,
            "linger.ms": 0,
            "message.timeout.ms": _ms(self._publish_timeout),
        }
        max_bytes = meta.integer("maxMessageBytes", 0)
        if max_bytes > 0:
            producer["message.max.bytes"] = max(max_bytes, 1000)
        retries = meta.integer("producerRetryMax", -1)
        if retries >= 0:
            if retries == 0 and acks == "all":
                raise self._spec_error("metadata 'producerRetryMax' must be positive with idempotent publishing")
            producer["retries"] = retries
        self._producer_config = {**producer, **passthrough}

        # Consumers.
        offset_reset = _OFFSET_RESETS.get(meta.text("initialOffset").strip().lower())
        if offset_reset is None:
            raise self._spec_error(f"kafka error: invalid initialOffset: {meta.text('initialOffset')}")
        strategy = _STRATEGIES.get(meta.text("consumerGroupRebalanceStrategy", "range").strip().lower())
        if strategy is None:
            raise self._spec_error("metadata 'consumerGroupRebalanceStrategy' must be range, roundrobin or sticky")
        session = meta.duration("sessionTimeout", 6.0)
        heartbeat = meta.duration("heartbeatInterval", 0.5)
        if not 0 < heartbeat < session:
            raise self._spec_error("metadata 'heartbeatInterval' must be positive and shorter than 'sessionTimeout'")
        self.buffer_size = meta.integer("channelBufferSize", 256)
        self.partition_concurrency = meta.integer("partitionConcurrency", 1)
        if self.buffer_size < 1 or self.partition_concurrency < 1:
            raise self._spec_error("metadata 'channelBufferSize' and 'partitionConcurrency' must be at least 1")
        fetch_min = meta.integer("consumerFetchMin", 1)
        fetch_default = meta.integer("consumerFetchDefault", 1024 * 1024)
        if fetch_min < 1 or fetch_default < 1:
            raise self._spec_error("metadata 'consumerFetchMin' and 'consumerFetchDefault' must be positive")
        consumer: dict[str, Any] = {
            **common,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": offset_reset,
            "session.timeout.ms": _ms(session),
            "heartbeat.interval.ms": _ms(heartbeat),
            "partition.assignment.strategy": strategy,
            "fetch.min.bytes": fetch_min,
            "max.partition.fetch.bytes": fetch_default,
            "fetch.wait.max.ms": 100,
            "queued.min.messages": self.buffer_size,
            "queued.max.messages.kbytes": 8192,
        }
        self._consumer_config = {**consumer, **passthrough}
        self._admin_config = {**common, **passthrough}

        self.consumer_group = meta.text("consumerGroup") or meta.text("consumerID")
        self.retry_interval = meta.duration("consumeRetryInterval", 0.1)
        self.drain_timeout = meta.duration("drainTimeout", 10.0)
        self.escape_headers = meta.boolean("escapeHeaders", False)
        exclude = meta.text("excludeHeaderMetaRegex")
        try:
            self._exclude_headers = re.compile(exclude) if exclude else None
        except re.error as exc:
            raise self._spec_error(f"metadata 'excludeHeaderMetaRegex' is not a valid regex: {exc}") from None
        self.partitions = meta.integer("partitions", 4)
        self.replication_factor = meta.integer("replicationFactor", -1)
        if self.partitions < 1:
            raise self._spec_error("metadata 'partitions' must be at least 1")

        self._producer: Producer | None = None
        self._poller: threading.Thread | None = None
        self._stop_polling = threading.Event()
        self._subscriptions: set[KafkaSubscription] = set()
        self._known_topics: set[str] = set()

    # --- configuration ----------------------------------------------------------------------------

    def _spec_error(self, problem: str) -> SpecError:
        where = self.metadata.where
        return SpecError(f"{where}: {problem}" if where else problem)

    def _security(self, meta: Metadata) -> dict[str, Any]:
        """librdkafka's security settings for ``authType`` (and the legacy ``authRequired``), as Dapr maps them."""
        auth_type = meta.text("authType").strip().lower()
        if not auth_type and meta.text("authRequired").strip():
            try:
                required = meta.boolean("authRequired", False)
            except SpecError:
                raise self._spec_error("kafka error: invalid value for 'authRequired' attribute") from None
            auth_type = ("password" if meta.text("saslPassword") else "mtls") if required else "none"
        if not auth_type:
            raise self._spec_error("kafka error: 'authType' attribute was missing or empty")
        if auth_type in _UNSUPPORTED_AUTH:
            raise self._spec_error(
                f"kafka error: authType '{auth_type}' is not supported (supported: none, password, mtls, certificate)"
            )
        tls = auth_type != "none" and not meta.boolean("disableTls", False)
        config: dict[str, Any] = {}
        if auth_type == "none":
            pass
        elif auth_type == "password":
            username, password = meta.text("saslUsername"), meta.text("saslPassword")
            if not username:
                raise self._spec_error("kafka error: missing SASL Username for authType 'password'")
            if not password:
                raise self._spec_error("kafka error: missing SASL Password for authType 'password'")
            mechanism = _SASL_MECHANISMS.get(meta.text("saslMechanism").strip().upper())
            if mechanism is None:
                raise self._spec_error(
                    f"kafka error: unsupported saslMechanism '{meta.text('saslMechanism')}' "
                    "(supported: PLAINTEXT, SHA-256, SHA-512)"
                )
            config |= {"sasl.mechanism": mechanism, "sasl.username": username, "sasl.password": password}
        elif auth_type == "mtls":
            cert, key = meta.text("clientCert"), meta.text("clientKey")
            if not tls:
                raise self._spec_error("kafka error: cannot configure mTLS authentication when 'disableTls' is true")
            if bool(cert) != bool(key):
                raise self._spec_error("kafka error: clientKey or clientCert is missing")
            if cert and not (_is_pem(cert) and _is_pem(key)):
                raise self._spec_error("kafka error: invalid client certificate or key (PEM expected)")
            if cert:
                config |= {"ssl.certificate.pem": cert, "ssl.key.pem": key}
        elif auth_type == "certificate":
            if not meta.text("caCert"):
                raise self._spec_error("missing CA certificate property 'caCert' for authType 'certificate'")
        else:
            raise self._spec_error(
                f"kafka error: unsupported authType '{auth_type}' (supported: none, password, mtls, certificate)"
            )
        sasl = auth_type == "password"
        config["security.protocol"] = (
            ("sasl_ssl" if tls else "sasl_plaintext") if sasl else ("ssl" if tls else "plaintext")
        )
        if tls:
            ca = meta.text("caCert")
            if ca:
                if not _is_pem(ca):
                    raise self._spec_error("kafka error: invalid ca certificate")
                config["ssl.ca.pem"] = ca
            if meta.boolean("skipVerify", False):
                config |= {
                    "enable.ssl.certificate.verification": False,
                    "ssl.endpoint.identification.algorithm": "none",
                }
        return config

    # --- lifecycle ---------------------------------------------------------------------------------

    async def init(self) -> None:
        config = {**self._producer_config, "error_cb": self._client_error, "logger": _rdkafka_log}
        try:
            self._producer = Producer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ComponentError(f"kafka: cannot create the producer: {_describe(exc)}") from exc
        self._stop_polling.clear()
        self._poller = threading.Thread(target=self._poll_producer, name=f"kafka-producer-{self.name}", daemon=True)
        self._poller.start()
        try:
            await self._list_topics(self._init_timeout)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        subscriptions = list(self._subscriptions)
        if subscriptions:
            await asyncio.gather(*(subscription.close() for subscription in subscriptions), return_exceptions=True)
        producer, self._producer = self._producer, None
        poller, self._poller = self._poller, None
        self._stop_polling.set()
        if poller is not None:
            await asyncio.to_thread(poller.join)
        if producer is not None:
            left = await asyncio.to_thread(producer.flush, _FLUSH_TIMEOUT)
            if left:
                log.warning("kafka %s: %d message(s) not delivered when the producer closed", self.name, left)

    async def ping(self) -> None:
        await self._list_topics(self._ping_timeout)

    async def _list_topics(self, timeout: float) -> None:
        producer = self._require_producer()
        try:
            await asyncio.to_thread(producer.list_topics, None, timeout)
        except KafkaException as exc:
            raise ComponentError(f"kafka: brokers {self._brokers} not reachable: {_describe(exc)}") from exc

    def _require_producer(self) -> Producer:
        if self._producer is None:
            raise ComponentError(f"kafka {self.name}: component is not initialized or closed")
        return self._producer

    def _poll_producer(self) -> None:
        while not self._stop_polling.is_set():
            producer = self._producer
            if producer is None:
                return
            producer.poll(_PRODUCER_POLL)

    def _client_error(self, error: KafkaError) -> None:
        log.warning("kafka %s: %s", self.name, error.str())

    # --- publishing --------------------------------------------------------------------------------

    async def publish(self, request: PublishRequest) -> None:
        await (await self._enqueue(request))

    async def bulk_publish(self, requests: Sequence[PublishRequest]) -> list[Exception | None]:
        outcomes: list[Exception | None] = [None] * len(requests)
        pending: list[tuple[int, asyncio.Future[None]]] = []
        for index, request in enumerate(requests):
            try:
                pending.append((index, await self._enqueue(request)))
            except ComponentError as exc:
                outcomes[index] = exc
        for index, future in pending:
            try:
                await future
            except Exception as exc:
                outcomes[index] = exc
        return outcomes

    async def _enqueue(self, request: PublishRequest) -> asyncio.Future[None]:
        """Hands one message to librdkafka; the future resolves with its delivery report."""
        producer = self._require_producer()
        loop = asyncio.get_running_loop()
        key: str | None = None
        headers: list[tuple[str, str | bytes | None]] = []
        for name, value in request.metadata.items():
            if name in _KEY_NAMES:
                if key is None or name == "partitionKey":
                    key = value
            elif self._exclude_headers is None or not self._exclude_headers.search(name):
                headers.append((name, value.encode()))
        future: asyncio.Future[None] = loop.create_future()
        on_delivery = partial(self._delivered, loop, future)
        deadline = loop.time() + self._publish_timeout
        while True:
            try:
                producer.produce(
                    request.topic,
                    value=request.data,
                    key=key.encode() if key is not None else None,
                    headers=headers or None,
                    on_delivery=on_delivery,
                )
                return future
            except BufferError:
                # librdkafka's queue is full: wait for deliveries to make room.
                if loop.time() > deadline:
                    raise ComponentError(f"kafka: cannot publish to {request.topic!r}: producer queue full") from None
                await asyncio.sleep(0.01)
            except KafkaException as exc:
                raise ComponentError(f"kafka: cannot publish to {request.topic!r}: {_describe(exc)}") from exc

    @staticmethod
    def _delivered(
        loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], error: KafkaError | None, _: Any
    ) -> None:
        """Delivery callback, on the producer's poll thread."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, future, error)

    # --- subscribing -------------------------------------------------------------------------------

    async def subscribe(self, request: SubscribeRequest, handler: Handler) -> KafkaSubscription:
        self._require_producer()
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
            error = _kafka_error(exc)
            code = error.code() if error is not None else None
            if code == KafkaError.TOPIC_EXCEPTION:
                raise ComponentError(f"kafka: invalid topic name {topic!r}: {_describe(exc)}") from exc
            if code != KafkaError.TOPIC_ALREADY_EXISTS:
                log.warning("kafka %s: could not create topic %r: %s", self.name, topic, _describe(exc))
                return
        self._known_topics.add(topic)


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
        return
    failure = ComponentError(f"kafka: delivery failed: {error.str()}")
    failure.__cause__ = KafkaException(error)
    future.set_exception(failure)


def _to_message(record: KafkaMessage, escape: bool) -> Message:
    topic = record.topic() or ""
    partition = record.partition()
    offset = record.offset()
    metadata: dict[str, str] = {}
    raw_headers = record.headers() or []
    items: Iterable[tuple[str, str | bytes | None]] = (
        raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    )
    for name, raw in items:
        value = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
        metadata[name] = quote_plus(value) if escape else value
    key = record.key()
    if key is not None:
        text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        metadata["__key"] = text
        metadata["partitionKey"] = text
    metadata["__topic"] = topic
    metadata["__partition"] = str(partition)
    metadata["__offset"] = str(offset)
    kind, timestamp = record.timestamp()
    if kind != TIMESTAMP_NOT_AVAILABLE:
        metadata["__timestamp"] = str(timestamp)
    payload = record.value()
    # A tombstone (null value) is delivered as JSON null, as Dapr does.
    data = b"null" if payload is None else payload
    return Message(topic=topic, data=data, metadata=metadata, id=f"{topic}/{partition}/{offset}")


class _Partition:
    """One assigned partition of a subscription.

    The poll thread owns ``dispatched``, ``paused`` and ``committed``; the event loop owns the rest and
    publishes its progress in ``finished`` (messages done or dropped) and ``done`` (the next offset to
    commit: every earlier message of the partition was handled).
    """

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.stopping = False
        # poll thread
        self.dispatched = 0
        self.paused = False
        self.committed: int | None = None
        # event loop
        self.queue: deque[tuple[int, Message]] = deque()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.running: dict[int, asyncio.Task[None]] = {}
        self.busy: set[int] = set()  # offsets whose handler is running (not waiting to retry)
        self.order: deque[int] = deque()  # offsets started and not yet committable, in order
        self.succeeded: set[int] = set()
        self.finished = 0
        self.done: int | None = None

    def position(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


class KafkaSubscription(Subscription):
    """A consumer, its poll thread, and one worker task per assigned partition."""

    def __init__(self, owner: KafkaPubSub, topic: str, group: str, handler: Handler, config: dict[str, Any]) -> None:
        self.owner = owner
        self.topic = topic
        self.group = group
        self._handler = handler
        self._config = config
        self._loop = asyncio.get_running_loop()
        self._partitions: dict[int, _Partition] = {}  # poll thread's view of the assignment
        self._stopping = threading.Event()
        self._finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._assigned = asyncio.Event()
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._error_logged: dict[int, float] = {}
        self._high = owner.buffer_size
        self._low = max(owner.buffer_size // 2, 0)

    # --- public ------------------------------------------------------------------------------------

    @property
    def assignment(self) -> list[int]:
        """The partitions this subscription owns now."""
        return sorted(self._partitions)

    async def wait_assigned(self, timeout: float) -> bool:
        """True once the group gave this consumer its first assignment (possibly empty)."""
        try:
            await asyncio.wait_for(self._assigned.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        try:
            consumer = Consumer({**self._config, "on_commit": self._committed})
            consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        except (KafkaException, ValueError, TypeError) as exc:
            raise ComponentError(f"kafka: cannot subscribe to {self.topic!r}: {_describe(exc)}") from exc
        self._consumer = consumer
        self._thread = threading.Thread(
            target=self._run, name=f"kafka-consumer-{self.owner.name}-{self.topic}", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._stopping.set()
            if self._thread is None:
                self._finished.set_result(None)
        await asyncio.shield(asyncio.wrap_future(self._finished))
        self.owner._forget(self)

    # --- poll thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self._stopping.is_set():
                try:
                    self._commit_progress(consumer)
                    self._apply_backpressure(consumer)
                    # poll() returns as soon as one message is there (consume() would wait for a full
                    # batch or the timeout); what else is already fetched is taken without waiting.
                    first = consumer.poll(_POLL_INTERVAL)
                    if first is not None:
                        self._dispatch([first, *consumer.consume(num_messages=self._high, timeout=0)])
                except KafkaException as exc:
                    log.warning("kafka subscription %s/%s: %s", self.topic, self.group, _describe(exc))
                    self._stopping.wait(1.0)
                except Exception:
                    log.exception("kafka subscription %s/%s: poll loop failed", self.topic, self.group)
                    self._stopping.wait(1.0)
        finally:
            try:
                self._shutdown(consumer)
            finally:
                self._finished.set_result(None)

    def _shutdown(self, consumer: Consumer) -> None:
        parts = list(self._partitions.values())
        self._partitions.clear()
        self._stop_parts(parts, self.owner.drain_timeout)
        self._commit_final(consumer, parts)
        try:
            consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.info("kafka subscription %s/%s: closing the consumer: %s", self.topic, self.group, _describe(exc))

    def _dispatch(self, records: list[KafkaMessage]) -> None:
        deliveries: list[tuple[_Partition, int, Message]] = []
        for record in records:
            error = record.error()
            if error is not None:
                self._log_error(error)
                continue
            part = self._partitions.get(record.partition() or 0)
            offset = record.offset()
            if part is None or part.stopping or offset is None:
                continue
            part.dispatched += 1
            deliveries.append((part, offset, _to_message(record, self.owner.escape_headers)))
        if deliveries:
            self._call_soon(self._feed, deliveries)

    def _commit_progress(self, consumer: Consumer) -> None:
        offsets: list[TopicPartition] = []
        for part in self._partitions.values():
            done = part.done
            if done is not None and done != part.committed:
                offsets.append(TopicPartition(part.topic, part.partition, done))
                part.committed = done
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=True)

    def _commit_final(self, consumer: Consumer, parts: list[_Partition]) -> None:
        """Synchronously commits the progress of partitions about to be given up (still owned now)."""
        offsets = [TopicPartition(p.topic, p.partition, p.done) for p in parts if p.done is not None]
        if not offsets:
            return
        try:
            results = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("kafka subscription %s/%s: final commit failed: %s", self.topic, self.group, _describe(exc))
            return
        for result in results or []:
            if result.error is not None:
                log.warning(
                    "kafka subscription %s/%s: commit of partition %d failed: %s",
                    self.topic,
                    self.group,
                    result.partition,
                    result.error.str(),
                )

    def _committed(self, error: KafkaError | None, offsets: list[TopicPartition]) -> None:
        """Asynchronous commit result (on the poll thread): a failed commit is retried next round."""
        if error is None and all(tp.error is None for tp in offsets):
            return
        if error is not None and error.code() == KafkaError._NO_OFFSET:
            return
        log.warning(
            "kafka subscription %s/%s: commit failed: %s",
            self.topic,
            self.group,
            error.str() if error is not None else "; ".join(str(tp.error) for tp in offsets if tp.error),
        )
        for tp in offsets:
            part = self._partitions.get(tp.partition)
            if part is not None and part.committed == tp.offset:
                part.committed = None

    def _apply_backpressure(self, consumer: Consumer) -> None:
        pause: list[_Partition] = []
        resume: list[_Partition] = []
        for part in self._partitions.values():
            outstanding = part.dispatched - part.finished
            if not part.paused and outstanding >= self._high:
                pause.append(part)
            elif part.paused and outstanding <= self._low:
                resume.append(part)
        if pause:
            consumer.pause([part.position() for part in pause])
            for part in pause:
                part.paused = True
        if resume:
            consumer.resume([part.position() for part in resume])
            for part in resume:
                part.paused = False

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        added: list[_Partition] = []
        for tp in partitions:
            if tp.topic == self.topic and tp.partition not in self._partitions:
                part = _Partition(tp.topic, tp.partition)
                self._partitions[tp.partition] = part
                added.append(part)
        log.debug("kafka subscription %s/%s: assigned %s", self.topic, self.group, [p.partition for p in added])
        self._call_soon(self._start_parts, added)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        parts = self._take(partitions)
        if not parts:
            return
        log.debug("kafka subscription %s/%s: revoked %s", self.topic, self.group, [p.partition for p in parts])
        self._stop_parts(parts, self.owner.drain_timeout)
        self._commit_final(consumer, parts)
        self._unpause(consumer, parts)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        parts = self._take(partitions)
        if not parts:
            return
        log.warning(
            "kafka subscription %s/%s: lost partitions %s", self.topic, self.group, [p.partition for p in parts]
        )
        self._stop_parts(parts, 0.0)
        self._unpause(consumer, parts)

    def _take(self, partitions: list[TopicPartition]) -> list[_Partition]:
        parts: list[_Partition] = []
        for tp in partitions:
            part = self._partitions.pop(tp.partition, None) if tp.topic == self.topic else None
            if part is not None:
                part.stopping = True
                parts.append(part)
        return parts

    def _unpause(self, consumer: Consumer, parts: list[_Partition]) -> None:
        paused = [part.position() for part in parts if part.paused]
        if paused:
            try:
                consumer.resume(paused)
            except KafkaException as exc:
                log.debug("kafka subscription %s/%s: resume: %s", self.topic, self.group, _describe(exc))

    def _stop_parts(self, parts: list[_Partition], drain: float) -> None:
        """Stops the partitions' workers on the loop and waits for them (in-flight handlers get ``drain``)."""
        for part in parts:
            part.stopping = True
        if not parts:
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self._stop_workers(parts, drain), self._loop)
        except RuntimeError:  # the loop is closed: its tasks are gone
            return
        try:
            future.result(timeout=drain + 5.0)
        except (TimeoutError, concurrent.futures.CancelledError) as exc:
            log.warning("kafka subscription %s/%s: workers did not stop: %r", self.topic, self.group, exc)

    def _call_soon(self, callback: Any, *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed
            self._stopping.set()

    def _log_error(self, error: KafkaError) -> None:
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            return
        now = time.monotonic()
        if now - self._error_logged.get(code, -_ERROR_LOG_INTERVAL) >= _ERROR_LOG_INTERVAL:
            self._error_logged[code] = now
            log.warning("kafka subscription %s/%s: %s", self.topic, self.group, error.str())

    # --- event loop --------------------------------------------------------------------------------

    def _start_parts(self, parts: list[_Partition]) -> None:
        self._assigned.set()
        for part in parts:
            if not part.stopping:
                part.task = asyncio.create_task(self._work(part), name=f"kafka {self.topic}[{part.partition}]")

    def _feed(self, deliveries: list[tuple[_Partition, int, Message]]) -> None:
        for part, offset, message in deliveries:
            if part.stopping:
                continue
            part.queue.append((offset, message))
            part.wakeup.set()

    async def _work(self, part: _Partition) -> None:
        """Starts the partition's messages in order. At most ``partitionConcurrency`` of them are started
        and not yet committable (running, or done after one still running), which also bounds how many
        are delivered again after a crash."""
        limit = self.owner.partition_concurrency
        while not part.stopping:
            if not part.queue or len(part.order) >= limit:
                part.wakeup.clear()
                await part.wakeup.wait()
                continue
            offset, message = part.queue.popleft()
            part.order.append(offset)
            part.running[offset] = asyncio.create_task(self._deliver(part, offset, message))

    async def _deliver(self, part: _Partition, offset: int, message: Message) -> None:
        """Calls the handler until it returns normally (or the partition stops), then records progress."""
        delay = max(self.owner.retry_interval, 0.001)
        try:
            while True:
                part.busy.add(offset)
                try:
                    await self._handler(message)
                except asyncio.CancelledError as exc:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # stopped by us: the message stays uncommitted
                    failure: BaseException = exc  # a handler's own cancellation is a failure like any other
                except Exception as exc:
                    failure = exc
                else:
                    break
                finally:
                    part.busy.discard(offset)
                log.warning(
                    "kafka subscription %s/%s: handler failed for %s, retrying in %.1fs: %s",
                    self.topic,
                    self.group,
                    message.id,
                    delay,
                    str(failure) or type(failure).__name__,
                )
                if part.stopping:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
            part.succeeded.add(offset)
            while part.order and part.order[0] in part.succeeded:
                first = part.order.popleft()
                part.succeeded.discard(first)
                part.done = first + 1
            part.finished += 1
        finally:
            part.running.pop(offset, None)
            part.wakeup.set()

    async def _stop_workers(self, parts: list[_Partition], drain: float) -> None:
        tasks: list[asyncio.Task[None]] = []
        for part in parts:
            part.stopping = True
            part.finished += len(part.queue)
            part.queue.clear()
            if part.task is not None:
                part.task.cancel()
                tasks.append(part.task)
            for offset, task in part.running.items():
                if offset not in part.busy:  # waiting to retry: its message stays uncommitted
                    task.cancel()
                tasks.append(task)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=drain) if drain > 0 else (set(), set(tasks))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
