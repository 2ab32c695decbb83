"""``lock.redis``: Dapr's standalone Redis lock.

A lock is the key ``lock||<prefix>||<resource>`` holding the owner, taken with ``SET key owner NX PX
<expiry>``, so Redis expires it. Unlock and renew are Lua scripts (one round trip each) that compare the
owner before deleting the key or moving its expiry: a missing key is ``LOCK_DOES_NOT_EXIST``, another
owner ``LOCK_BELONGS_TO_OTHERS``. Use a single Redis node (or a primary with its replicas): a lock held
only by a replica that is promoted after a failover may be lost, as with Dapr's component.

Metadata: the connection settings of ``building_blocks._common.redis`` (``redisHost`` required,
``redisPort``, ``redisUsername``, ``redisPassword``, ``redisDB``, ``enableTLS``, ``redisMaxRetries`` /
``maxRetries``, ``dialTimeout``, ``readTimeout``, ``poolSize``, ``poolTimeout``), ``keyPrefix`` (read by
the block).
"""

from __future__ import annotations

from redis.asyncio import Redis

from building_blocks._common.metadata import LOCK, parse
from building_blocks._common.redis import ComponentClient, RedisSettings, Script, translated
from building_blocks.component import ComponentContext, Metadata
from building_blocks.lock.base import LockStatus, LockStore, RenewRequest, TryLockRequest, UnlockRequest

__all__ = ("RedisLockStore",)

# KEYS[1]: the lock. ARGV[1]: the owner. Replies a LockStatus.
_UNLOCK = """
local owner = redis.call("GET", KEYS[1])
if not owner then return 1 end
if owner ~= ARGV[1] then return 2 end
redis.call("DEL", KEYS[1])
return 0
"""

# KEYS[1]: the lock. ARGV[1]: the owner, ARGV[2]: the new expiry in milliseconds. Replies a LockStatus.
_RENEW = """
local owner = redis.call("GET", KEYS[1])
if not owner then return 1 end
if owner ~= ARGV[1] then return 2 end
redis.call("PEXPIRE", KEYS[1], ARGV[2])
return 0
"""


class RedisLockStore(LockStore):
    """One connection pool; try_lock is one SET, unlock and renew one EVALSHA each."""

    _unlock: Script
    _renew: Script

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(RedisSettings, metadata, LOCK)
        self._connection = ComponentClient(self.name, settings.pool_options())

    async def init(self) -> None:
        client = self._connection.open()
        self._unlock = Script(client, _UNLOCK)
        self._renew = Script(client, _RENEW)
        await self.ping()

    async def close(self) -> None:
        await self._connection.close()

    def _redis(self) -> Redis:
        return self._connection.client

    async def ping(self) -> None:
        await self._connection.ping()

    async def try_lock(self, request: TryLockRequest) -> bool:
        expiry_ms = request.expiry_in_seconds * 1000
        with translated():
            taken = await self._redis().set(request.resource_id, request.lock_owner, nx=True, px=expiry_ms)
        return bool(taken)

    async def unlock(self, request: UnlockRequest) -> LockStatus:
        self._redis()
        with translated():
            status = await self._unlock(keys=[request.resource_id], args=[request.lock_owner])
        return LockStatus(int(status))

    async def renew(self, request: RenewRequest) -> LockStatus:
        self._redis()
        with translated():
            status = await self._renew(
                keys=[request.resource_id], args=[request.lock_owner, request.expiry_in_seconds * 1000]
            )
        return LockStatus(int(status))
