"""``configuration.redis``: items as Redis strings in Dapr's format, watched with keyspace notifications.

Format (Dapr's): each item is a STRING key holding ``<value>||<version>`` (``||<version>`` optional). Keys of
other types, and empty values, are not items. Item metadata can't be stored in this format; saves ignore it.
Saves (Layotto's extension) run one Lua script that sets every item to its value and the previous numeric
version + 1 (``1`` for a new key), so concurrent saves never hand out the same version.

Watching (as Dapr): ``notify-keyspace-events`` must include ``K`` and ``g$xe`` (or ``A``); the first
subscription adds what is missing with ``CONFIG SET``, keeping the server's other flags (where ``CONFIG``
is disabled, set it on the server). One pub/sub connection per component carries every subscription: a
key is ``SUBSCRIBE``d (``__keyspace@<db>__:<key>``) once however many subscriptions watch it, and
``PSUBSCRIBE``d as ``__keyspace@<db>__:*`` while some subscription watches all keys; a subscription is
active once Redis has confirmed its channels. Each event triggers one ``GET`` of the key, whose item (or
``None`` when it is gone or empty) goes to every subscription watching it.

Metadata: ``redisHost`` (required, ``host:port``), ``redisPort`` (6379, when the host has no port),
``redisUsername``, ``redisPassword``, ``redisDB`` (0), ``enableTLS`` (false), ``redisMaxRetries`` /
``maxRetries`` (3), ``dialTimeout`` (5s), ``readTimeout`` (3s), ``poolSize`` (10 per CPU),
``poolTimeout`` (readTimeout + 1s). ``redisType`` must be ``node`` (cluster is not supported).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError, ResponseError

from building_blocks._common.metadata import CONFIGURATION, group, parse, text
from building_blocks._common.redis import ComponentClient, LeanConnection, RedisSettings, Script, translated
from building_blocks.component import ComponentContext, Metadata
from building_blocks.configuration.base import (
    ConfigurationItem,
    ConfigurationStore,
    DeleteRequest,
    GetRequest,
    SaveRequest,
    Subscription,
)
from building_blocks.errors import ComponentError, SpecError

__all__ = ("RedisConfigurationStore",)

log = logging.getLogger(__name__)

SEPARATOR = "||"
_BATCH = 500
_RECONNECT_DELAY = 1.0
#: Keyspace events (K) of generic commands (g), strings ($), expiry (x) and eviction (e): Dapr's set.
_NEEDED_FLAGS = "Kg$xe"

# KEYS: the keys; ARGV: their values. Each becomes "<value>||<previous numeric version + 1>".
_SAVE = """
for i, key in ipairs(KEYS) do
  local old = redis.call("GET", key)
  local version = 0
  if old then
    local found = string.match(old, "||(%d+)$")
    if found then version = tonumber(found) end
  end
  redis.call("SET", key, ARGV[i] .. "||" .. string.format("%d", version + 1))
end
return #KEYS
"""


def parse_value(raw: bytes | str | None) -> ConfigurationItem | None:
    """A stored string as an item (``None`` when missing or empty): ``value||version`` or a bare value."""
    if raw is None:
        return None
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    value, separator, version = text.rpartition(SEPARATOR)
    if not separator:
        value, version = text, ""
    return ConfigurationItem(value, version) if value else None


def _needed_flags(current: str) -> str:
    """The keyspace-event flags to add to ``current`` so Dapr's events are published ('' when none)."""
    have = set(current)
    needed = "K" if "A" in have else _NEEDED_FLAGS
    return "".join(flag for flag in needed if flag not in have)


@dataclass(frozen=True, slots=True)
class RedisConfigurationMetadata:
    connection: RedisSettings = field(metadata=group(RedisSettings))
    redis_type: str = text("redisType", "node")  # cluster is not supported


class RedisConfigurationStore(ConfigurationStore):
    """One connection pool for reads and writes, one pub/sub connection for every subscription."""

    _save_script: Script

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(RedisConfigurationMetadata, metadata, CONFIGURATION)
        if settings.redis_type.lower() != "node":
            raise SpecError(f"{metadata.where}: metadata 'redisType' must be 'node' (cluster is not supported)")
        self._connection = ComponentClient(self.name, settings.connection.pool_options())
        self._db = int(self._connection.options["db"])
        # The pub/sub connection: the same settings, alone in its pool, kept alive by TCP keepalive.
        self._connection_options = {
            k: v for k, v in self._connection.options.items() if k not in ("max_connections", "timeout")
        }
        self._connection_options["socket_keepalive"] = True
        self._connection_options.setdefault("connection_class", LeanConnection)  # writeTimeout and its messages
        self._connection_options["client_name"] = f"layotto-configuration-{self.name}"
        self._timeout = settings.connection.read_timeout + settings.connection.dial_timeout
        self._prefix = f"__keyspace@{self._db}__:"
        self._all_keys_pattern = self._prefix + "*"
        self._pubsub_pool: ConnectionPool | None = None
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribers: collections.Counter[str] = collections.Counter()  # channel -> subscriptions
        self._confirmed: dict[str, asyncio.Future[None]] = {}  # channel -> Redis confirmed it

    # -- lifecycle ---------------------------------------------------------------------------------

    async def init(self) -> None:
        self._save_script = Script(self._connection.open(), _SAVE)
        await self.ping()

    async def close(self) -> None:
        await super().close()
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        pool, self._pubsub_pool = self._pubsub_pool, None
        if pool is not None:
            await pool.aclose()
        await self._connection.close()

    @property
    def _redis(self) -> Redis:
        return self._connection.client

    async def ping(self) -> None:
        await self._connection.ping()

    # -- items -------------------------------------------------------------------------------------

    async def get(self, request: GetRequest) -> dict[str, ConfigurationItem]:
        items: dict[str, ConfigurationItem] = {}
        with translated():
            async for keys in self._batches(request.keys):
                values = await self._redis.mget(keys)  # nil for missing keys and keys of other types
                for key, raw in zip(keys, values, strict=True):
                    item = parse_value(raw)
                    if item is not None:
                        items[key.decode(errors="replace") if isinstance(key, bytes) else key] = item
        return items

    async def _batches(self, keys: Sequence[str]) -> AsyncIterator[list[Any]]:
        """The keys asked for, or every key of the database, in batches for ``MGET``."""
        if keys:
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), _BATCH):
                yield unique[start : start + _BATCH]
            return
        batch: list[Any] = []
        async for key in self._redis.scan_iter(count=1000):
            batch.append(key)
            if len(batch) == _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    async def save(self, request: SaveRequest) -> None:
        if not request.items:
            return
        with translated():
            await self._save_script(keys=[i.key for i in request.items], args=[i.value for i in request.items])

    async def delete(self, request: DeleteRequest) -> None:
        with translated():
            await self._redis.delete(*request.keys)

    # -- watching ------------------------------------------------------------------------------------

    async def _enable_notifications(self) -> None:
        try:
            found = await self._redis.config_get("notify-keyspace-events")
            current = next(iter(found.values()), b"") if found else b""
            current = current.decode() if isinstance(current, bytes) else str(current)
            missing = _needed_flags(current)
            if missing:
                await self._redis.config_set("notify-keyspace-events", current + missing)
        except ResponseError as exc:  # CONFIG disabled or renamed (managed Redis): the server's setting rules
            log.warning(
                "%s: can't check notify-keyspace-events (%s); subscriptions need it to include '%s'",
                self.name,
                exc,
                _NEEDED_FLAGS,
            )

    def _pubsub_connection(self) -> PubSub:
        if self._pubsub is None:
            self._pubsub_pool = ConnectionPool(**self._connection_options, max_connections=1)
            self._pubsub = Redis(connection_pool=self._pubsub_pool).pubsub()
        return self._pubsub

    def _channels(self, subscription: Subscription) -> list[str]:
        if subscription.all_keys:
            return [self._all_keys_pattern]
        return [self._prefix + key for key in subscription.keys]

    async def _watch(self, subscription: Subscription) -> None:
        channels = self._channels(subscription)
        new = []
        for channel in channels:  # counted first, so a failure below undoes exactly this subscription
            self._subscribers[channel] += 1
            if channel not in self._confirmed:
                self._confirmed[channel] = asyncio.get_running_loop().create_future()
                new.append(channel)
        waits = [asyncio.shield(self._confirmed[channel]) for channel in channels]
        try:
            with translated():
                await self._enable_notifications()
                if new:
                    pubsub = self._pubsub_connection()
                    if subscription.all_keys:
                        await pubsub.psubscribe(*new)
                    else:
                        await pubsub.subscribe(*new)
                    if self._listener is None:  # reads the confirmations, then the events
                        self._listener = asyncio.create_task(self._listen(pubsub), name=f"{self.name}-keyspace")
            try:
                async with asyncio.timeout(self._timeout):
                    await asyncio.gather(*waits)
            except TimeoutError:
                raise ComponentError(f"redis: no confirmation of the subscription after {self._timeout}s") from None
        except BaseException:
            with contextlib.suppress(ComponentError):
                await self._drop(channels, subscription.all_keys)
            raise

    async def _unwatch(self, subscription: Subscription) -> None:
        await self._drop(self._channels(subscription), subscription.all_keys)

    async def _drop(self, channels: Iterable[str], pattern: bool) -> None:
        """One subscription fewer on ``channels``; unsubscribe those nobody watches any more."""
        unused = []
        for channel in channels:
            if self._subscribers[channel] <= 0:
                continue
            self._subscribers[channel] -= 1
            if self._subscribers[channel] == 0:
                del self._subscribers[channel]
                self._confirmed.pop(channel, None)
                unused.append(channel)
        if unused and self._pubsub is not None:
            with translated():
                if pattern:
                    await self._pubsub.punsubscribe(*unused)
                else:
                    await self._pubsub.unsubscribe(*unused)

    async def _listen(self, pubsub: PubSub) -> None:
        """Read confirmations and events until cancelled. After a failure, the next read reconnects (and
        redis-py subscribes the channels again); the flags are checked again, as a restarted server lost them.
        Changes made while the connection was down are not replayed."""
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
                if message is not None:
                    await self._on_message(message)
            except Exception as exc:
                log.warning("%s: keyspace notifications interrupted (%s); reconnecting", self.name, exc)
                await asyncio.sleep(_RECONNECT_DELAY)
                with contextlib.suppress(RedisError):
                    await self._enable_notifications()

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"]
        channel = channel.decode(errors="replace") if isinstance(channel, bytes) else str(channel)
        if kind in ("subscribe", "psubscribe"):
            confirmed = self._confirmed.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
            return
        if kind not in ("message", "pmessage") or not channel.startswith(self._prefix):
            return
        key = channel[len(self._prefix) :]
        try:
            item = parse_value(await self._redis.get(key))
        except ResponseError:  # not a string: not a configuration item
            return
        except (RedisError, ComponentError) as exc:
            log.warning("%s: reading changed key %r: %s", self.name, key, exc)
            return
        # A key watched both by name and by '*' arrives twice: once for each kind of subscription.
        by_pattern = kind == "pmessage"
        self._publish(key, item, lambda subscription: subscription.all_keys == by_pattern)
