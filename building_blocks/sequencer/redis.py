"""``sequencer.redis``: one counter per key in Redis: ``INCR`` for an id, ``INCRBY`` for a segment.

Floors are applied at start by a Lua script that raises a counter below its floor. Use a single node with
AOF persistence (``appendfsync always`` for no loss at all): a Redis that loses writes may give an id twice,
as Layotto's docs warn.

Metadata: the connection settings of ``building_blocks._common.redis`` (``redisHost`` required,
``redisPort``, ``redisUsername``, ``redisPassword``, ``redisDB``, ``enableTLS``, ``redisMaxRetries`` /
``maxRetries``, ``dialTimeout``, ``readTimeout``, ``poolSize``, ``poolTimeout``), and the block-level
settings.
"""

from __future__ import annotations

from redis.asyncio import Redis

from building_blocks._common.metadata import SEQUENCER, parse
from building_blocks._common.redis import ComponentClient, RedisSettings, Script, translated
from building_blocks.component import ComponentContext, Metadata
from building_blocks.sequencer.base import CounterSequencer

__all__ = ("RedisSequencer",)

# KEYS[1]: the counter, ARGV[1]: the floor.
_RAISE = """
local value = tonumber(redis.call("GET", KEYS[1]) or "0")
if value < tonumber(ARGV[1]) then redis.call("SET", KEYS[1], ARGV[1]) end
return 1
"""


class RedisSequencer(CounterSequencer):
    _raise: Script

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(RedisSettings, metadata, SEQUENCER)
        self._connection = ComponentClient(self.name, settings.pool_options())

    async def init(self) -> None:
        self._raise = Script(self._connection.open(), _RAISE)
        await self.ping()
        await self.apply_floors()

    async def close(self) -> None:
        await self._connection.close()

    def _redis(self) -> Redis:
        return self._connection.client

    async def ping(self) -> None:
        await self._connection.ping()

    async def add(self, key: str, amount: int) -> int:
        client = self._redis()
        with translated():  # an overflow is a Redis error
            value = await (client.incr(key) if amount == 1 else client.incrby(key, amount))
        return int(value)

    async def raise_to(self, key: str, floor: int) -> None:
        self._redis()
        with translated():
            await self._raise(keys=[key], args=[floor])
