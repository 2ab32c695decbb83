"""``pubsub.redis`` against a real Redis: the Dapr stream layout, consumer groups, at-least-once
redelivery (failed handlers and crashed consumers), backpressure, close and error translation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError, SpecError
from building_blocks.pubsub.base import Message, PublishRequest, SubscribeRequest
from building_blocks.pubsub.redis import RedisPubSub
from tests.services import require_redis

pytestmark = pytest.mark.redis

FAST = {"processingTimeout": "0.5s", "redeliverInterval": "0.2s"}  # reclaim quickly


@pytest.fixture
def address() -> str:
    return require_redis()


@pytest.fixture
async def raw(address: str) -> AsyncIterator[aioredis.Redis]:
    host, _, port = address.partition(":")
    client = aioredis.Redis(host=host, port=int(port or 6379))
    yield client
    await client.aclose()


@pytest.fixture
async def topic(raw: aioredis.Redis) -> AsyncIterator[str]:
    name = f"test-pubsub-{uuid4().hex}"
    yield name
    await raw.delete(name)


Components = Callable[..., Awaitable[RedisPubSub]]


@pytest.fixture
async def components(address: str, topic: str) -> AsyncIterator[Components]:
    """Initialised components (think: sidecars), closed after the test and before its topic is deleted."""
    made: list[RedisPubSub] = []

    async def make(**metadata: str) -> RedisPubSub:
        component = RedisPubSub("pubsub", Metadata({"redisHost": address, **metadata}, "test"))
        await component.init()
        made.append(component)
        return component

    yield make
    for component in made:
        await component.close()


class Recorder:
    """A handler that records what it got; ``fail`` decides per message whether to raise."""

    def __init__(self, fail: Callable[[Message], bool] = lambda _: False) -> None:
        self.fail = fail
        self.attempts: list[Message] = []
        self.handled: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.attempts.append(message)
        if self.fail(message):
            raise RuntimeError("handler failed")
        self.handled.append(message)

    @property
    def data(self) -> list[bytes]:
        return [m.data for m in self.handled]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def pending(raw: aioredis.Redis, topic: str, group: str) -> int:
    return int((await raw.xpending(topic, group))["pending"])


async def all_acknowledged(raw: aioredis.Redis, topic: str, group: str) -> None:
    """Acks follow the handlers' return: wait for the group's pending list to empty."""
    deadline = time.monotonic() + 5.0
    while await pending(raw, topic, group):
        assert time.monotonic() < deadline, "messages still pending"
        await asyncio.sleep(0.02)


async def publish_all(component: RedisPubSub, topic: str, count: int) -> list[bytes]:
    payloads = [f"m{i}".encode() for i in range(count)]
    for payload in payloads:
        await component.publish(PublishRequest(topic, payload))
    return payloads


# --- layout and round trip ------------------------------------------------------------------------


async def test_round_trip_keeps_bytes_and_metadata(components: Components, raw: aioredis.Redis, topic: str) -> None:
    pubsub = await components()
    recorder = Recorder()
    await pubsub.subscribe(SubscribeRequest(topic, "g"), recorder)
    binary = bytes(range(256)) + b'\x00{"not": json'
    await pubsub.publish(PublishRequest(topic, binary, {"traceparent": "00-abc", "ünï": "cödé"}))
    await pubsub.publish(PublishRequest(topic, b"plain"))

    await eventually(lambda: len(recorder.handled) == 2)
    first, second = sorted(recorder.handled, key=lambda m: m.id)
    assert (first.topic, first.data, dict(first.metadata)) == (topic, binary, {"traceparent": "00-abc", "ünï": "cödé"})
    assert (second.data, dict(second.metadata)) == (b"plain", {})
    # Dapr's layout: fields `data` and, only when there is metadata, `metadata` as JSON.
    entries: Any = await raw.xrange(topic)
    assert [sorted(fields) for _, fields in entries] == [[b"data", b"metadata"], [b"data"]]
    assert first.id == entries[0][0].decode()
    await all_acknowledged(raw, topic, "g")


async def test_entries_of_other_producers_are_read_as_dapr_does(
    components: Components, raw: aioredis.Redis, topic: str
) -> None:
    pubsub = await components()
    recorder = Recorder()
    await pubsub.subscribe(SubscribeRequest(topic, "g"), recorder)
    await raw.xadd(topic, {"data": b"x", "metadata": b"not json"})
    await raw.xadd(topic, {"other": b"y"})
    await eventually(lambda: len(recorder.handled) == 2)
    assert [(m.data, dict(m.metadata)) for m in recorder.handled] == [(b"x", {}), (b"", {})]


async def test_consumer_id_is_the_default_group(
    address: str, components: Components, raw: aioredis.Redis, topic: str
) -> None:
    pubsub = await components(consumerID="fallback")
    await pubsub.subscribe(SubscribeRequest(topic, ""), Recorder())
    assert [g["name"] for g in await raw.xinfo_groups(topic)] == [b"fallback"]

    app = RedisPubSub("p", Metadata({"redisHost": address}), ComponentContext(app_id="myapp"))
    await app.init()
    try:
        await app.subscribe(SubscribeRequest(topic, ""), Recorder())
        assert sorted(g["name"] for g in await raw.xinfo_groups(topic)) == [b"fallback", b"myapp"]
    finally:
        await app.close()

    nameless = await components()
    with pytest.raises(ComponentError, match="consumer group"):
        await nameless.subscribe(SubscribeRequest(topic, ""), Recorder())


# --- groups -----------------------------------------------------------------------------------------


async def test_one_group_shares_messages_between_sidecars(
    components: Components, raw: aioredis.Redis, topic: str
) -> None:
    first, second = Recorder(), Recorder()
    for recorder in (first, second):
        sidecar = await components(queueDepth="5")
        await sidecar.subscribe(SubscribeRequest(topic, "app"), recorder)
    payloads = await publish_all(await components(), topic, 100)

    await eventually(lambda: len(first.handled) + len(second.handled) >= 100)
    await asyncio.sleep(0.1)
    assert first.handled and second.handled
    assert sorted(first.data + second.data) == sorted(payloads)  # each message once, in one of them
    await all_acknowledged(raw, topic, "app")


async def test_each_group_gets_every_message(components: Components, topic: str) -> None:
    pubsub = await components()
    one, two = Recorder(), Recorder()
    await pubsub.subscribe(SubscribeRequest(topic, "one"), one)
    await pubsub.subscribe(SubscribeRequest(topic, "two"), two)
    payloads = await publish_all(pubsub, topic, 20)
    await eventually(lambda: len(one.handled) == 20 and len(two.handled) == 20)
    assert one.data == payloads and two.data == payloads


async def test_a_new_group_reads_the_stream_from_its_start(components: Components, topic: str) -> None:
    pubsub = await components()
    payloads = await publish_all(pubsub, topic, 3)
    recorder = Recorder()
    await pubsub.subscribe(SubscribeRequest(topic, "late"), recorder)
    await eventually(lambda: recorder.data == payloads)


# --- at-least-once ----------------------------------------------------------------------------------


async def test_a_failed_message_is_redelivered_then_acknowledged(
    components: Components, raw: aioredis.Redis, topic: str
) -> None:
    pubsub = await components(**FAST)
    recorder = Recorder(fail=lambda m: sum(a.id == m.id for a in recorder.attempts) == 1)
    await pubsub.subscribe(SubscribeRequest(topic, "g"), recorder)
    await pubsub.publish(PublishRequest(topic, b"retry me"))

    await eventually(lambda: len(recorder.handled) == 1)
    assert [a.data for a in recorder.attempts] == [b"retry me", b"retry me"]
    await all_acknowledged(raw, topic, "g")


async def test_no_redelivery_when_processing_timeout_is_zero(
    components: Components, raw: aioredis.Redis, topic: str
) -> None:
    pubsub = await components(processingTimeout="0", redeliverInterval="0.1s")
    recorder = Recorder(fail=lambda _: True)
    await pubsub.subscribe(SubscribeRequest(topic, "g"), recorder)
    await pubsub.publish(PublishRequest(topic, b"once"))
    await eventually(lambda: len(recorder.attempts) == 1)
    await asyncio.sleep(0.4)
    assert len(recorder.attempts) == 1
    assert await pending(raw, topic, "g") == 1


async def test_messages_of_a_dead_consumer_are_reclaimed(
    components: Components, raw: aioredis.Redis, topic: str
) -> None:
    publisher = await components()
    await raw.xgroup_create(topic, "app", "0", mkstream=True)
    payloads = await publish_all(publisher, topic, 5)
    # A sidecar reads them, then is killed before acknowledging anything.
    await raw.xreadgroup("app", "dead", {topic: ">"}, count=10)
    assert await pending(raw, topic, "app") == 5

    recorder = Recorder()
    started = time.monotonic()
    survivor = await components(**FAST)
    await survivor.subscribe(SubscribeRequest(topic, "app"), recorder)
    await eventually(lambda: len(recorder.handled) == 5)
    assert time.monotonic() - started >= 0.4  # only once they were idle for processingTimeout
    assert sorted(recorder.data) == sorted(payloads)
    await all_acknowledged(raw, topic, "app")


async def test_a_message_whose_handler_never_returned_is_redelivered(
    components: Components, raw: aioredis.Redis, topic: str
) -> None:
    stuck = asyncio.Event()

    async def hang(message: Message) -> None:
        stuck.set()
        await asyncio.Event().wait()

    first = await components(**FAST)
    subscription = await first.subscribe(SubscribeRequest(topic, "app"), hang)
    await first.publish(PublishRequest(topic, b"survives"))
    await stuck.wait()
    with pytest.raises(TimeoutError):  # shutdown gave up waiting: the handler is cancelled, nothing acked
        await asyncio.wait_for(subscription.close(), 0.2)
    assert await pending(raw, topic, "app") == 1

    recorder = Recorder()
    second = await components(**FAST)
    await second.subscribe(SubscribeRequest(topic, "app"), recorder)
    await eventually(lambda: recorder.data == [b"survives"])
    await all_acknowledged(raw, topic, "app")


# --- flow control and lifecycle ---------------------------------------------------------------------


async def test_concurrency_caps_handlers_running_at_once(components: Components, topic: str) -> None:
    running = peak = done = 0

    async def slow(message: Message) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.03)
        running -= 1
        done += 1

    pubsub = await components(concurrency="3", queueDepth="20")
    await pubsub.subscribe(SubscribeRequest(topic, "g"), slow)
    await publish_all(pubsub, topic, 30)
    await eventually(lambda: done == 30)
    assert peak == 3


async def test_a_slow_handler_stops_the_reads(components: Components, raw: aioredis.Redis, topic: str) -> None:
    release = asyncio.Event()
    recorder = Recorder()

    async def blocked(message: Message) -> None:
        await release.wait()
        await recorder(message)

    pubsub = await components(concurrency="2", queueDepth="5")
    await pubsub.subscribe(SubscribeRequest(topic, "g"), blocked)
    await publish_all(pubsub, topic, 20)
    await asyncio.sleep(0.3)
    assert await pending(raw, topic, "g") == 5  # read and held: queueDepth, no more
    release.set()
    await eventually(lambda: len(recorder.handled) == 20)


async def test_close_waits_for_in_flight_handlers_and_acknowledges_them(
    components: Components, raw: aioredis.Redis, topic: str
) -> None:
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow(message: Message) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.set()

    pubsub = await components()
    subscription = await pubsub.subscribe(SubscribeRequest(topic, "g"), slow)
    await pubsub.publish(PublishRequest(topic, b"x"))
    await started.wait()
    await subscription.close()
    assert finished.is_set()
    assert await pending(raw, topic, "g") == 0
    await subscription.close()  # twice is fine


async def test_closing_the_component_stops_its_subscriptions(components: Components, topic: str) -> None:
    pubsub = await components()
    recorder = Recorder()
    await pubsub.subscribe(SubscribeRequest(topic, "g"), recorder)
    await pubsub.close()
    await (await components()).publish(PublishRequest(topic, b"unseen"))
    await asyncio.sleep(0.3)
    assert recorder.handled == []


@pytest.fixture
def private_redis() -> Iterator[str]:
    """A redis-server of this test alone: its command counts are this test's own."""
    if shutil.which("redis-server") is None:
        if os.environ.get("LAYOTTO_REQUIRE_SERVICES"):
            pytest.fail("redis-server is needed (required in CI)")
        pytest.skip("no redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


async def test_an_idle_subscription_blocks_instead_of_polling(private_redis: str) -> None:
    pubsub = RedisPubSub("pubsub", Metadata({"redisHost": private_redis}, "test"))
    await pubsub.init()
    host, _, port = private_redis.partition(":")
    raw = aioredis.Redis(host=host, port=int(port))
    try:
        await pubsub.subscribe(SubscribeRequest(f"idle-{uuid4().hex}", "g"), Recorder())
        await asyncio.sleep(0.2)

        async def reads() -> int:
            stats = await raw.info("commandstats")
            return int(stats.get("cmdstat_xreadgroup", {}).get("calls", 0))

        before, cpu = await reads(), time.process_time()
        await asyncio.sleep(1.0)
        assert await reads() - before <= 2
        assert time.process_time() - cpu < 0.1
        clients = await raw.client_list()
        assert any(c["cmd"] == "xreadgroup" and "b" in c["flags"] for c in clients)  # blocked in Redis
    finally:
        await pubsub.close()
        await raw.aclose()


async def test_max_len_approx_trims_the_stream(components: Components, raw: aioredis.Redis, topic: str) -> None:
    pubsub = await components(maxLenApprox="10")
    await publish_all(pubsub, topic, 500)
    assert 10 <= await raw.xlen(topic) <= 200


# --- errors -----------------------------------------------------------------------------------------


async def test_an_unreachable_redis_is_a_component_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pubsub = RedisPubSub("p", Metadata({"redisHost": f"127.0.0.1:{port}", "redisMaxRetries": "0"}))
    with pytest.raises(ComponentError):
        await pubsub.publish(PublishRequest("t", b"x"))  # not initialised
    with pytest.raises(ComponentError):
        await pubsub.init()
    with pytest.raises(ComponentError):
        await pubsub.publish(PublishRequest("t", b"x"))
    with pytest.raises(ComponentError):
        await pubsub.subscribe(SubscribeRequest("t", "g"), Recorder())
    await pubsub.close()


@pytest.mark.parametrize(
    "metadata",
    [
        {},  # no redisHost
        {"redisHost": "localhost", "concurrency": "0"},
        {"redisHost": "localhost", "queueDepth": "-1"},
        {"redisHost": "localhost", "processingTimeout": "soon"},
        {"redisHost": "localhost", "maxLenApprox": "many"},
    ],
)
def test_bad_metadata_is_a_spec_error(metadata: dict[str, str]) -> None:
    with pytest.raises(SpecError):
        RedisPubSub("p", Metadata(metadata, "test"))
