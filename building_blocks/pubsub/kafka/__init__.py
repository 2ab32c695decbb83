"""``pubsub.kafka``: Dapr's Kafka pub/sub on librdkafka (confluent-kafka).

Modules: ``metadata`` (the typed declaration and the librdkafka settings made from it), ``producer``,
``consumer`` (a subscription), ``component`` (``KafkaPubSub``, which the registry loads).

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

from building_blocks.pubsub.kafka.component import KafkaPubSub
from building_blocks.pubsub.kafka.consumer import KafkaSubscription

__all__ = ("KafkaPubSub", "KafkaSubscription")
