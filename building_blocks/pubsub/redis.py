"""``pubsub.redis``: topics as Redis Streams, in the layout of Dapr's Redis pub/sub.

A topic is a stream of that name. Publishing is ``XADD <topic> [MAXLEN ~ n] * data <bytes>``, plus a field
``metadata`` (a JSON object of strings) when the request has metadata. A subscription's consumer group is
the request's group (or ``consumerID``), created at ``0`` so a new group reads the whole stream; its
consumer name is unique (``<group>-<uuid>``), so sidecars of one group share the messages and every
group gets them all.

Each subscription runs one loop on a connection of its own (its blocking reads never hold a pooled
connection): ``XREADGROUP ... COUNT <room> BLOCK ... STREAMS <topic> >``. At most ``queueDepth`` messages
are held at once (the loop reads only when there is room: a slow handler slows the reads down) and at
most ``concurrency`` are handled at once. A message is acknowledged (``XACK``, on the pool) only after
its handler returned normally.

Redelivery: a message whose handler raised, or which a crashed sidecar read but never acknowledged,
stays pending in its group. Every ``redeliverInterval`` the loop runs ``XAUTOCLAIM`` with a minimum idle
time of ``processingTimeout``, taking such messages over and handling them again, so delivery is
at-least-once (a handler slower than ``processingTimeout`` may see its message delivered to another
sidecar too). The loop also reclaims once when it starts. Redis errors in the loop are logged and
retried with backoff.

Features: none claimed.
Metadata: the connection settings of ``building_blocks._common.redis`` (``redisHost``, ``redisPort``,
``redisUsername``, ``redisPassword``, ``redisDB``, ``enableTLS``, ``redisMaxRetries``, ``dialTimeout``,
``readTimeout``, ``poolSize``, ``poolTimeout``); ``consumerID`` (the group of subscriptions that give
none; the app id by default), ``processingTimeout`` (15s; 0 disables redelivery), ``redeliverInterval``
(60s; 0 disables redelivery), ``queueDepth`` (100: messages a subscription holds at once, read and not
yet done with), ``concurrency`` (10: messages it handles at once), ``maxLenApprox`` (caps each stream at
about that many entries; no cap by default).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from building_blocks._common.metadata import PUBSUB, duration, group, integer, parse, text
from building_blocks._common.redis import ComponentClient, RedisSettings, execute, redis_client, translated
from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError, SpecError
from building_blocks.pubsub.base import Handler, Message, PublishRequest, PubSub, SubscribeRequest, Subscription

__all__ = ("RedisPubSub",)

log = logging.getLogger(__name__)

_MAX_BLOCK = 2.0  # seconds an idle subscription's read waits: one command per 2s at most when idle
_BACKOFF_BASE = 0.1  # seconds before the first retry of a failed read; doubles up to _BACKOFF_MAX
_BACKOFF_MAX = 5.0

#: A stream entry as redis-py returns it: its id and its fields (both None for an entry Redis < 7 reports
#: as deleted in XAUTOCLAIM's reply).
_Entry = tuple[bytes | None, dict[bytes, bytes] | None]


@dataclass(frozen=True, slots=True)
class _Reading:
    """How subscriptions read: the component's settings, shared by all its subscriptions."""

    reader_pool: dict[str, Any]  # options of each subscription's own single-connection pool
    queue_depth: int
    concurrency: int
    processing_timeout: float
    redeliver_interval: float

    @property
    def redelivers(self) -> bool:
        return self.processing_timeout > 0 and self.redeliver_interval > 0


class _StreamSubscription(Subscription):
    """One consumer of one group of one stream, and its loop."""

    _reader: Redis  # the loop's own connection, opened by start()

    def __init__(
        self,
        client: Redis,
        reading: _Reading,
        topic: str,
        group: str,
        handler: Handler,
        on_close: Callable[[_StreamSubscription], None],
    ) -> None:
        self._client = client
        self._reading = reading
        self._topic = topic
        self._group = group
        self._consumer = f"{group}-{uuid.uuid4().hex}"
        self._handler = handler
        self._on_close = on_close
        self._workers = asyncio.Semaphore(reading.concurrency)
        self._in_flight: dict[bytes, asyncio.Task[None]] = {}
        self._room = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Create the group if needed (``ComponentError`` on failure), then start the loop."""
        with translated():
            await self._create_group()
        self._reader = redis_client(self._reading.reader_pool)
        self._loop = asyncio.create_task(self._run(), name=f"pubsub.redis {self._topic} {self._consumer}")

    async def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        self._on_close(self)
        try:
            # Python 3.11's asyncio.wait_for (redis-py sends with it) can swallow a cancellation that races
            # with its completion, and the loop would go on reading: cancel until it is over.
            while not loop.done():
                loop.cancel()
                await asyncio.wait([loop], timeout=0.1)
            await asyncio.gather(*self._in_flight.values())  # being cancelled cancels the handlers too
        finally:
            await self._reader.aclose(close_connection_pool=True)

    async def _create_group(self) -> None:
        try:
            await self._client.xgroup_create(self._topic, self._group, "0", mkstream=True)
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def _run(self) -> None:
        """Read new messages and, when due, reclaim idle pending ones, until cancelled."""
        clock = asyncio.get_running_loop().time
        next_reclaim = clock() if self._reading.redelivers else math.inf
        failures = 0
        while True:
            try:
                if failures:
                    await self._create_group()  # the stream may be gone (e.g. Redis restarted empty)
                if clock() >= next_reclaim:
                    await self._reclaim()
                    next_reclaim = clock() + self._reading.redeliver_interval
                else:
                    await self._read(min(_MAX_BLOCK, next_reclaim - clock()))
                failures = 0
            except Exception as exc:  # Redis errors, mostly: the loop outlives them all
                delay = min(_BACKOFF_BASE * 2**failures, _BACKOFF_MAX)
                failures += 1
                log.warning(
                    "pubsub.redis: reading %s as %s failed (%s); retrying in %.1fs",
                    self._topic,
                    self._consumer,
                    exc,
                    delay,
                    exc_info=not isinstance(exc, RedisError),
                )
                await asyncio.sleep(delay)

    async def _read(self, block: float) -> None:
        room = await self._wait_for_room()
        reply = await self._reader.xreadgroup(
            self._group, self._consumer, {self._topic: ">"}, count=room, block=max(1, int(block * 1000))
        )
        # redis-py's default (legacy) reply: [[stream, entries]], or [] when the read timed out.
        for _, entries in cast("list[tuple[bytes, list[_Entry]]]", reply):
            self._dispatch(entries)

    async def _reclaim(self) -> None:
        cursor: bytes | str = "0-0"
        min_idle = int(self._reading.processing_timeout * 1000)
        while True:
            room = await self._wait_for_room()
            cursor, entries, *_ = await self._reader.xautoclaim(
                self._topic, self._group, self._consumer, min_idle, cursor, count=room
            )
            self._dispatch(entries)
            if cursor == b"0-0":
                return

    async def _wait_for_room(self) -> int:
        """How many more messages may be held, once there is room for at least one."""
        while len(self._in_flight) >= self._reading.queue_depth:
            self._room.clear()
            await self._room.wait()
        return self._reading.queue_depth - len(self._in_flight)

    def _dispatch(self, entries: list[_Entry]) -> None:
        for entry_id, fields in entries:
            if entry_id is None or fields is None:
                continue
            if entry_id in self._in_flight:  # reclaimed from ourselves while its handler is still running
                continue
            task = asyncio.create_task(self._deliver(entry_id, fields))
            self._in_flight[entry_id] = task
            task.add_done_callback(partial(self._settled, entry_id))

    def _settled(self, entry_id: bytes, _: asyncio.Task[None]) -> None:
        del self._in_flight[entry_id]
        self._room.set()

    async def _deliver(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        async with self._workers:
            message = _message(self._topic, entry_id.decode(), fields)
            try:
                await self._handler(message)
            except Exception as exc:
                log.info(
                    "pubsub.redis: message %s of %s not handled (%s); left pending for redelivery",
                    message.id,
                    self._topic,
                    exc,
                )
                return
            try:
                await self._client.xack(self._topic, self._group, entry_id)
            except RedisError as exc:
                log.warning("pubsub.redis: acknowledging message %s of %s failed: %s", message.id, self._topic, exc)


def _message(topic: str, entry_id: str, fields: dict[bytes, bytes]) -> Message:
    """A stream entry as a message, read as Dapr does: a missing ``data`` is empty, bad ``metadata`` ignored."""
    metadata: Mapping[str, str] = {}
    if b"metadata" in fields:
        try:
            decoded = orjson.loads(fields[b"metadata"])
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict) and all(isinstance(value, str) for value in decoded.values()):
            metadata = decoded
        else:
            log.warning("pubsub.redis: message %s of %s has invalid metadata; ignored", entry_id, topic)
    return Message(topic, fields.get(b"data", b""), metadata, entry_id)


@dataclass(frozen=True, slots=True)
class RedisPubSubMetadata:
    connection: RedisSettings = field(metadata=group(RedisSettings))
    consumer_id: str = text("consumerID")  # the app id
    processing_timeout: float = duration("processingTimeout", 15.0)  # 0: no redelivery
    redeliver_interval: float = duration("redeliverInterval", 60.0)  # 0: no redelivery
    queue_depth: int = integer("queueDepth", 100)
    concurrency: int = integer("concurrency", 10)
    max_len_approx: int = integer("maxLenApprox", 0)  # <= 0: no cap


def _at_least_one(value: int, name: str, where: str) -> int:
    if value < 1:
        raise SpecError(f"{where}: metadata '{name}' must be at least 1, got {value}")
    return value


class RedisPubSub(PubSub):
    """A connection pool for publishing and acknowledging; one connection more per subscription."""

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(RedisPubSubMetadata, metadata, PUBSUB)
        self._connection = ComponentClient(self.name, settings.connection.pool_options())
        # A subscription's blocking reads may take _MAX_BLOCK longer than other commands.
        read_timeout = self._connection.options["socket_timeout"]
        self._reading = _Reading(
            reader_pool={
                **self._connection.options,
                "max_connections": 1,
                "socket_timeout": read_timeout and read_timeout + _MAX_BLOCK,
            },
            queue_depth=_at_least_one(settings.queue_depth, "queueDepth", metadata.where),
            concurrency=_at_least_one(settings.concurrency, "concurrency", metadata.where),
            processing_timeout=settings.processing_timeout,
            redeliver_interval=settings.redeliver_interval,
        )
        self._consumer_id = settings.consumer_id or self.context.app_id
        max_len = settings.max_len_approx
        self._max_len = max_len if max_len > 0 else None
        self._subscriptions: set[_StreamSubscription] = set()

    async def init(self) -> None:
        self._connection.open()
        await self.ping()

    async def close(self) -> None:
        await asyncio.gather(*(subscription.close() for subscription in list(self._subscriptions)))
        await self._connection.close()

    async def ping(self) -> None:
        await self._connection.ping()

    async def publish(self, request: PublishRequest) -> None:
        args: list[str | bytes | int] = ["XADD", request.topic]
        if self._max_len is not None:
            args += ("MAXLEN", "~", self._max_len)
        args += ("*", "data", request.data)
        if request.metadata:
            args += ("metadata", orjson.dumps(dict(request.metadata)))
        with translated():
            await execute(self._redis(), *args)

    async def subscribe(self, request: SubscribeRequest, handler: Handler) -> Subscription:
        group = request.group or self._consumer_id
        if not group:
            raise ComponentError(f"{self.name}: subscribing to {request.topic} needs a consumer group (consumerID)")
        subscription = _StreamSubscription(
            self._redis(), self._reading, request.topic, group, handler, self._subscriptions.discard
        )
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    def _redis(self) -> Redis:
        return self._connection.client
