"""``pubsub.kafka`` against a real Kafka-protocol broker (a private Tansu, see tests/kafka_broker.py).

Every test uses fresh topics and groups. A group join costs about 3 s (the broker's initial rebalance
delay), so tests start their subscriptions together where they can.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from confluent_kafka import Consumer, TopicPartition

from building_blocks.component import Metadata
from building_blocks.errors import ComponentError, SpecError
from building_blocks.pubsub.base import Feature, Message, PublishRequest, SubscribeRequest
from building_blocks.pubsub.kafka import KafkaPubSub, KafkaSubscription

JOIN_TIMEOUT = 20.0


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def spec(brokers: str = "127.0.0.1:1", **metadata: str) -> KafkaPubSub:
    return KafkaPubSub("kafka", Metadata({"brokers": brokers, "authType": "none", **metadata}, "test"))


@pytest.fixture
async def make(kafka_brokers: str) -> AsyncIterator[Callable[..., Awaitable[KafkaPubSub]]]:
    """Initialized components on the test broker, closed after the test."""
    made: list[KafkaPubSub] = []

    async def factory(**metadata: str) -> KafkaPubSub:
        component = spec(kafka_brokers, **{"initialOffset": "oldest", **metadata})
        await component.init()
        made.append(component)
        return component

    yield factory
    for component in made:
        await component.close()


class Inbox:
    """A handler recording what it was given; ``behaviour`` may raise or block."""

    def __init__(self, behaviour: Callable[[Message], Awaitable[None]] | None = None) -> None:
        self.messages: list[Message] = []
        self.calls: list[bytes] = []
        self.behaviour = behaviour
        self._changed = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.calls.append(message.data)
        self._changed.set()
        if self.behaviour is not None:
            await self.behaviour(message)
        self.messages.append(message)
        self._changed.set()

    @property
    def data(self) -> list[bytes]:
        return [message.data for message in self.messages]

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; handled {self.data}, calls {self.calls}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))

    async def count(self, n: int, timeout: float = 10.0) -> None:
        await self.until(lambda: len(self.messages) >= n, timeout)


async def committed(brokers: str, group: str, topic: str, partitions: int = 1) -> dict[int, int]:
    """The group's committed offsets (partition -> next offset), without joining the group."""

    def read() -> dict[int, int]:
        consumer = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
        try:
            result = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=5)
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in result if tp.offset >= 0}

    return await asyncio.to_thread(read)


async def eventually_committed(
    brokers: str, group: str, topic: str, expected: dict[int, int], partitions: int = 1
) -> None:
    deadline = time.monotonic() + 10
    while (offsets := await committed(brokers, group, topic, partitions)) != expected:
        assert time.monotonic() < deadline, f"committed {offsets}, expected {expected}"
        await asyncio.sleep(0.1)


async def assigned(*subscriptions: KafkaSubscription) -> None:
    for subscription in subscriptions:
        assert await subscription.wait_assigned(JOIN_TIMEOUT), "the group did not assign partitions"


async def publish_all(component: KafkaPubSub, topic: str, payloads: list[bytes], **metadata: str) -> None:
    outcomes = await component.bulk_publish([PublishRequest(topic, data, metadata) for data in payloads])
    assert outcomes == [None] * len(payloads)


# --- publishing and receiving -----------------------------------------------------------------------


async def test_round_trip_with_headers_metadata_and_partition_key(make, kafka_brokers):
    kafka = await make()
    topic, group = new_name("rt"), new_name("g")
    inbox = Inbox()
    started = time.monotonic()
    subscription = await kafka.subscribe(SubscribeRequest(topic, group), inbox)
    await kafka.publish(PublishRequest(topic, b'{"n":0}', {"partitionKey": "user-1", "traceparent": "00-ab-cd-01"}))
    await inbox.count(1, JOIN_TIMEOUT)
    first_after = time.monotonic() - started
    for n in range(1, 6):
        await kafka.publish(PublishRequest(topic, b'{"n":%d}' % n, {"partitionKey": "user-1", "x-seq": str(n)}))
    await inbox.count(6)

    first = inbox.messages[0]
    assert first.topic == topic
    assert first.data == b'{"n":0}'
    assert first.metadata["traceparent"] == "00-ab-cd-01"
    assert first.metadata["partitionKey"] == first.metadata["__key"] == "user-1"
    assert first.metadata["__topic"] == topic
    assert int(first.metadata["__timestamp"]) > 0
    # One key, one partition, in order; headers come back as metadata.
    assert inbox.data == [b'{"n":%d}' % n for n in range(6)]
    assert len({m.metadata["__partition"] for m in inbox.messages}) == 1
    assert [m.metadata.get("x-seq") for m in inbox.messages] == [None, "1", "2", "3", "4", "5"]
    assert [int(m.metadata["__offset"]) for m in inbox.messages] == list(range(6))
    partition = int(first.metadata["__partition"])
    assert first.id == f"{topic}/{partition}/0"
    assert subscription.assignment == [0, 1, 2, 3]
    await eventually_committed(kafka_brokers, group, topic, {partition: 6}, partitions=4)
    print(f"first message {first_after:.2f}s after subscribe")


async def test_publish_before_any_subscription_then_close_everything(make):
    kafka = await make()
    topic = new_name("pre")
    await kafka.publish(PublishRequest(topic, b"early", {"key": "k"}))
    inbox = Inbox()
    subscription = await kafka.subscribe(SubscribeRequest(topic, new_name("g")), inbox)
    await inbox.count(1, JOIN_TIMEOUT)
    assert inbox.messages[0].metadata["partitionKey"] == "k"
    assert "key" not in inbox.messages[0].metadata
    await kafka.ping()

    await kafka.close()  # closes the subscription too
    await kafka.close()
    await subscription.close()
    with pytest.raises(ComponentError):
        await kafka.publish(PublishRequest(topic, b"late"))
    with pytest.raises(ComponentError):
        await kafka.subscribe(SubscribeRequest(topic, "g"), inbox)
    with pytest.raises(ComponentError):
        await kafka.ping()


async def test_bulk_publish_reports_one_outcome_per_entry(make):
    kafka = await make(maxMessageBytes="2000")
    assert kafka.features == frozenset({Feature.BULK_PUBSUB})
    topic = new_name("bulk")
    requests = [PublishRequest(topic, b"m%d" % n, {"partitionKey": str(n)}) for n in range(10)]
    requests[4] = PublishRequest(topic, b"x" * 10_000)  # larger than maxMessageBytes
    outcomes = await kafka.bulk_publish(requests)
    assert [outcome is None for outcome in outcomes] == [n != 4 for n in range(10)]
    assert isinstance(outcomes[4], ComponentError)
    with pytest.raises(ComponentError):
        await kafka.publish(requests[4])

    inbox = Inbox()
    await kafka.subscribe(SubscribeRequest(topic, new_name("g")), inbox)
    await inbox.count(9, JOIN_TIMEOUT)
    assert sorted(inbox.data) == sorted(b"m%d" % n for n in range(10) if n != 4)

    await kafka.close()
    outcomes = await kafka.bulk_publish(requests[:2])
    assert all(isinstance(outcome, ComponentError) for outcome in outcomes)
    with pytest.raises(ComponentError):
        await kafka.ping()


# --- at-least-once ----------------------------------------------------------------------------------


async def test_failing_handler_is_retried_in_place_and_nothing_after_it_is_committed(make, kafka_brokers):
    kafka = await make(partitions="1", consumeRetryInterval="50ms")
    topic, group = new_name("retry"), new_name("g")
    failures = 0
    release = asyncio.Event()

    async def flaky(message: Message) -> None:
        nonlocal failures
        if message.data == b"m0" and not release.is_set():
            failures += 1
            # A handler's own CancelledError (not a cancellation of the delivery) is a failure too.
            raise asyncio.CancelledError() if failures == 2 else RuntimeError("app not ready")

    inbox = Inbox(flaky)
    await kafka.subscribe(SubscribeRequest(topic, group), inbox)  # creates the topic, with 1 partition
    await publish_all(kafka, topic, [b"m0", b"m1", b"m2"])
    await inbox.until(lambda: failures >= 3, JOIN_TIMEOUT)
    await asyncio.sleep(0.5)  # room for (wrong) commits to happen
    assert set(inbox.calls) == {b"m0"}, "the partition moved past a failing message"
    assert inbox.messages == []
    assert await committed(kafka_brokers, group, topic) == {}

    release.set()
    await inbox.count(3)
    assert inbox.data == [b"m0", b"m1", b"m2"]
    await eventually_committed(kafka_brokers, group, topic, {0: 3})


async def test_unacknowledged_messages_are_delivered_again_to_the_next_consumer(make, kafka_brokers):
    """A consumer that stops without finishing (as a crash does) leaves its work uncommitted: the
    group's next consumer gets it again. With partitionConcurrency, messages after a stuck one that
    did finish are not committed past it either."""
    kafka = await make(partitions="1", drainTimeout="300ms", partitionConcurrency="3")
    topic, group = new_name("crash"), new_name("g")
    payloads = [b"m%d" % n for n in range(10)]
    stuck = asyncio.Event()

    async def stuck_on_m5(message: Message) -> None:
        if message.data == b"m5":
            await stuck.wait()  # never set: the "crash" interrupts it

    first = Inbox(stuck_on_m5)
    subscription = await kafka.subscribe(SubscribeRequest(topic, group), first)  # 1 partition
    await publish_all(kafka, topic, payloads)
    await first.until(lambda: {b"m6", b"m7"} <= set(first.data) and b"m5" in first.calls, JOIN_TIMEOUT)
    await eventually_committed(kafka_brokers, group, topic, {0: 5})
    assert b"m8" not in first.calls  # at most 3 in flight: m5 (stuck), m6 and m7 done, m8 waits for room
    started = time.monotonic()
    await subscription.close()
    assert time.monotonic() - started < 3
    assert await committed(kafka_brokers, group, topic) == {0: 5}

    second = Inbox()
    await kafka.subscribe(SubscribeRequest(topic, group), second)
    await second.count(5, JOIN_TIMEOUT)
    assert sorted(second.data) == payloads[5:]
    await eventually_committed(kafka_brokers, group, topic, {0: 10})


async def test_consumers_of_one_group_split_the_partitions(make):
    kafka = await make()
    topic, group = new_name("split"), new_name("g")
    a, b = Inbox(), Inbox()
    sub_a = await kafka.subscribe(SubscribeRequest(topic, group), a)
    await publish_all(kafka, topic, [b"first-%d" % n for n in range(20)], partitionKey="x")
    await a.count(20, JOIN_TIMEOUT)

    # A second member: the group rebalances; what a handled before is committed at revocation.
    sub_b = await kafka.subscribe(SubscribeRequest(topic, group), b)
    deadline = time.monotonic() + JOIN_TIMEOUT
    while not (sub_a.assignment and sub_b.assignment and sorted(sub_a.assignment + sub_b.assignment) == [0, 1, 2, 3]):
        assert time.monotonic() < deadline, (sub_a.assignment, sub_b.assignment)
        await asyncio.sleep(0.1)
    second = [PublishRequest(topic, b"second-%d" % n, {"partitionKey": f"k{n}"}) for n in range(40)]
    assert await kafka.bulk_publish(second) == [None] * 40
    await a.until(lambda: len(a.messages) + len(b.messages) >= 60, JOIN_TIMEOUT)
    await asyncio.sleep(0.5)
    everything = a.data + b.data
    assert sorted(everything) == sorted([b"first-%d" % n for n in range(20)] + [r.data for r in second])
    assert len(everything) == len(set(everything)), "a message was delivered twice"
    assert any(d.startswith(b"second") for d in a.data) and b.data


async def test_every_group_gets_every_message(make, kafka_brokers):
    fixed_group = new_name("fixed")
    kafka, other = await make(), await make(consumerGroup=fixed_group)
    topic = new_name("fan")
    a, b = Inbox(), Inbox()
    await kafka.subscribe(SubscribeRequest(topic, new_name("ga")), a)
    subscription = await other.subscribe(SubscribeRequest(topic, "ignored"), b)  # consumerGroup wins
    assert subscription.group == fixed_group
    payloads = [b"m%d" % n for n in range(20)]
    await publish_all(kafka, topic, payloads, partitionKey="p")
    await a.count(20, JOIN_TIMEOUT)
    await b.count(20, JOIN_TIMEOUT)
    assert a.data == b.data == payloads
    partition = int(b.messages[0].metadata["__partition"])
    await eventually_committed(kafka_brokers, fixed_group, topic, {partition: 20}, partitions=4)


async def test_initial_offset_oldest_reads_history_and_newest_does_not(make):
    oldest = await make(initialOffset="oldest")
    newest = await make(initialOffset="newest")
    topic = new_name("offsets")
    await oldest.publish(PublishRequest(topic, b"old", {"partitionKey": "p"}))
    from_oldest, from_newest = Inbox(), Inbox()
    await oldest.subscribe(SubscribeRequest(topic, new_name("g")), from_oldest)
    sub_newest = await newest.subscribe(SubscribeRequest(topic, new_name("g")), from_newest)
    await assigned(sub_newest)
    # The newest offset is fixed when the consumer first fetches after its assignment: probe until then.
    deadline = time.monotonic() + JOIN_TIMEOUT
    while not from_newest.messages:
        assert time.monotonic() < deadline
        await newest.publish(PublishRequest(topic, b"probe", {"partitionKey": "p"}))
        await asyncio.sleep(0.2)
    await newest.publish(PublishRequest(topic, b"new", {"partitionKey": "p"}))
    await from_newest.until(lambda: b"new" in from_newest.data)
    await from_oldest.until(lambda: b"new" in from_oldest.data)
    assert b"old" not in from_newest.data
    assert from_oldest.data[0] == b"old"


async def test_unreachable_brokers_fail_init():
    kafka = spec("127.0.0.1:1", metadataTimeout="500ms")
    with pytest.raises(ComponentError, match="not reachable"):
        await kafka.init()


# --- metadata ---------------------------------------------------------------------------------------


def test_metadata_maps_to_librdkafka_settings():
    kafka = spec(
        "a:9092, b:9092",
        clientID="me",
        sessionTimeout="10s",
        heartbeatInterval="1s",
        compression="zstd",
        maxMessageBytes="4096",
        consumerGroupRebalanceStrategy="sticky",
        initialOffset="newest",
        **{"librdkafka.socket.nagle.disable": "true"},
    )
    producer, consumer = kafka._producer_config, kafka._consumer_config
    assert producer["bootstrap.servers"] == consumer["bootstrap.servers"] == "a:9092,b:9092"
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    assert producer["compression.type"] == "zstd" and producer["message.max.bytes"] == 4096
    assert producer["client.id"] == "me" and producer["security.protocol"] == "plaintext"
    assert consumer["enable.auto.commit"] is False and consumer["auto.offset.reset"] == "latest"
    assert consumer["session.timeout.ms"] == 10_000 and consumer["heartbeat.interval.ms"] == 1000
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    assert consumer["socket.nagle.disable"] == "true" == producer["socket.nagle.disable"]
    defaults = spec()._consumer_config
    assert (defaults["session.timeout.ms"], defaults["heartbeat.interval.ms"]) == (6000, 500)
    assert defaults["topic.metadata.refresh.interval.ms"] == 1000
    assert spec(producerRequiredAcks="1")._producer_config["enable.idempotence"] is False
    assert spec()._producer_config["linger.ms"] == 0  # sent at once, as Dapr's Sarama producer does
    assert spec(**{"librdkafka.linger.ms": "5"})._producer_config["linger.ms"] == "5"


@pytest.mark.parametrize(
    ("mechanism", "expected"), [("SHA-512", "SCRAM-SHA-512"), ("SHA-256", "SCRAM-SHA-256"), ("PLAINTEXT", "PLAIN")]
)
def test_password_auth_is_sasl_over_tls_unless_disabled(mechanism, expected):
    meta = {"authType": "password", "saslUsername": "u", "saslPassword": "p", "saslMechanism": mechanism}
    config = spec(**meta)._producer_config
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("sasl_ssl", expected)
    assert (config["sasl.username"], config["sasl.password"]) == ("u", "p")
    assert spec(**meta, disableTls="true")._consumer_config["security.protocol"] == "sasl_plaintext"


def test_legacy_auth_required_is_mapped():
    assert spec(authType="", authRequired="false")._producer_config["security.protocol"] == "plaintext"
    config = spec(authType="", authRequired="true", saslUsername="u", saslPassword="p")._producer_config
    assert config["security.protocol"] == "sasl_ssl"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"authType": ""}, "'authType' attribute was missing or empty"),
        ({"authType": "oidc"}, "not supported"),
        ({"authType": "awsiam"}, "not supported"),
        ({"authType": "kerberos"}, "unsupported authType 'kerberos'"),
        ({"authType": "password", "saslPassword": "p"}, "missing SASL Username"),
        ({"authType": "password", "saslUsername": "u"}, "missing SASL Password"),
        ({"authType": "password", "saslUsername": "u", "saslPassword": "p", "saslMechanism": "MD5"}, "saslMechanism"),
        ({"authType": "mtls", "clientCert": "x"}, "clientKey or clientCert is missing"),
        ({"authType": "mtls", "disableTls": "true"}, "cannot configure mTLS"),
        ({"authType": "certificate"}, "caCert"),
        ({"authRequired": "maybe", "authType": ""}, "authRequired"),
        ({"brokers": ""}, "brokers"),
        ({"initialOffset": "middle"}, "invalid initialOffset"),
        ({"compression": "brotli"}, "compression"),
        ({"producerRequiredAcks": "2"}, "producerRequiredAcks"),
        ({"heartbeatInterval": "10s", "sessionTimeout": "6s"}, "heartbeatInterval"),
        ({"consumerGroupRebalanceStrategy": "greedy"}, "consumerGroupRebalanceStrategy"),
        ({"sessionTimeout": "soon"}, "sessionTimeout"),
        ({"partitions": "0"}, "partitions"),
    ],
)
def test_bad_metadata_is_a_spec_error(metadata, message):
    with pytest.raises(SpecError, match=message):
        KafkaPubSub("kafka", Metadata({"brokers": "b:9092", "authType": "none", **metadata}, "test"))
