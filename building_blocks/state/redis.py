"""``state.redis``: items kept in Redis, in the layout of Dapr's Redis state store.

Each key is a HASH with fields ``data`` (the value) and ``version`` (incremented by every write,
starting at 1); the etag is the version in decimal. Two Lua scripts, loaded once and run by EVALSHA,
do all the work, so every operation is one round trip: ``READ`` (value, version and PTTL of any
number of keys) and ``WRITE`` (checks every etag of a list of sets/deletes, then applies them all;
a single set or delete is a one-operation list).

Features: ETAG (integer versions), TRANSACTIONAL, TTL.
Metadata: the connection settings of ``building_blocks._common.redis`` (``redisHost``, ``redisPort``,
``redisUsername``, ``redisPassword``, ``redisDB``, ``enableTLS``, ``redisMaxRetries`` / ``maxRetries``,
``dialTimeout``, ``readTimeout``, ``poolSize``, ``poolTimeout``), and ``ttlInSeconds`` (default TTL of
writes that give none; none by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError, ResponseError

from building_blocks._common.cooperative import SLICE
from building_blocks._common.metadata import STATE, group, integer, parse
from building_blocks._common.redis import ComponentClient, RedisSettings, Script
from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError, ETagMismatch
from building_blocks.state.base import (
    BulkGetItem,
    DeleteRequest,
    Feature,
    GetReply,
    GetRequest,
    GetResponse,
    SetRequest,
    StateStore,
    TransactionRequest,
    require_integer_etag,
)

__all__ = ("READ_SCRIPT", "WRITE_SCRIPT", "RedisStateMetadata", "RedisStateStore")

_MISMATCH = "ETAGMISMATCH"  # the error code of the WRITE script's concurrency failures

# KEYS: the keys. Reply per key: nil when missing, {data, version, pttl}, or an error text.
READ_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local item = redis.pcall("HMGET", key, "data", "version")
  if item.err then
    out[i] = item.err
  elseif item[1] then
    out[i] = {item[1], item[2], redis.call("PTTL", key)}
  else
    out[i] = false
  end
end
return out
"""

# KEYS: the key of each operation. ARGV: 5 per operation: "s"et or "d"elete, etag ("" = none),
# first-write ("1" or ""), value, ttl in seconds (<= 0 = no expiry). Checks all, then applies all.
WRITE_SCRIPT = """
local staged = {}
for i, key in ipairs(KEYS) do
  local at = (i - 1) * 5
  local etag, first_write = ARGV[at + 2], ARGV[at + 3] == "1"
  local exists = staged[key]
  if exists == nil then
    local version = redis.call("HGET", key, "version")
    if etag ~= "" then
      if version ~= etag then return redis.error_reply("ETAGMISMATCH etag mismatch") end
    elseif first_write and version then
      return redis.error_reply("ETAGMISMATCH first-write: the key already exists")
    end
  elseif etag ~= "" or (first_write and exists) then
    return redis.error_reply("ETAGMISMATCH etag of " .. key .. " changed earlier in the transaction")
  end
  staged[key] = ARGV[at + 1] == "s"
end
for i, key in ipairs(KEYS) do
  local at = (i - 1) * 5
  if ARGV[at + 1] == "s" then
    redis.call("HSET", key, "data", ARGV[at + 4])
    redis.call("HINCRBY", key, "version", 1)
    local ttl = tonumber(ARGV[at + 5])
    if ttl > 0 then redis.call("EXPIRE", key, ttl) else redis.call("PERSIST", key) end
  else
    redis.call("DEL", key)
  end
end
return #KEYS
"""


@dataclass(frozen=True, slots=True)
class RedisStateMetadata:
    connection: RedisSettings = field(metadata=group(RedisSettings))
    ttl_in_seconds: int = integer("ttlInSeconds", 0)  # <= 0: none


class RedisStateStore(StateStore):
    """One connection pool and two scripts; every operation is one EVALSHA."""

    features = frozenset({Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL})

    _read: Script
    _write: Script

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(RedisStateMetadata, metadata, STATE)
        self._connection = ComponentClient(self.name, settings.connection.pool_options())
        ttl = settings.ttl_in_seconds
        self._default_ttl = ttl if ttl > 0 else None

    async def init(self) -> None:
        client = self._connection.open()
        self._read = Script(client, READ_SCRIPT)
        self._write = Script(client, WRITE_SCRIPT)
        await self.ping()

    async def close(self) -> None:
        await self._connection.close()

    async def ping(self) -> None:
        await self._connection.ping()

    async def get(self, request: GetRequest) -> GetResponse | None:
        try:
            (reply,) = await self._read(keys=[request.key])
        except RedisError as exc:
            raise _translation(exc) from exc
        return _response(reply, time.time())

    def get_now(self, request: GetRequest, reply: GetReply, fallback: Callable[[], None]) -> bool:
        """``get`` by ``Script.call_now``: the read script's reply taken from the connection's callbacks."""

        def got(answer: Any) -> None:
            outcome: GetResponse | Exception | None
            try:
                if isinstance(answer, RedisError):
                    raise _translation(answer) from answer
                (item,) = answer
                outcome = _response(item, time.time())
            except Exception as exc:  # what ``get`` raises for it
                outcome = exc
            reply(outcome)

        return self._read.call_now([request.key], got, fallback)

    async def bulk_get(self, requests: Sequence[GetRequest]) -> list[BulkGetItem]:
        items: list[BulkGetItem] = []
        for start in range(0, len(requests), SLICE):  # one script per slice: the loop serves others between
            part = requests[start : start + SLICE]
            with _translated():
                replies = await self._read(keys=[r.key for r in part])
            now = time.time()
            for request, reply in zip(part, replies, strict=True):
                try:
                    items.append(BulkGetItem(request.key, _response(reply, now)))
                except ComponentError as exc:
                    items.append(BulkGetItem(request.key, error=str(exc)))
        return items

    async def set(self, request: SetRequest) -> None:
        await self._apply([request])

    async def delete(self, request: DeleteRequest) -> None:
        await self._apply([request])

    async def transact(self, request: TransactionRequest) -> None:
        if request.operations:
            await self._apply(request.operations)

    async def _apply(self, operations: Sequence[SetRequest | DeleteRequest]) -> None:
        args: list[str | bytes | int] = []
        for op in operations:
            etag = str(require_integer_etag(op.etag)) if op.etag else ""
            if isinstance(op, SetRequest):
                ttl = op.ttl if op.ttl is not None else self._default_ttl
                args += ("s", etag, "1" if op.first_write else "", op.value, ttl or 0)
            else:
                args += ("d", etag, "", b"", 0)
        with _translated():
            await self._write(keys=[op.key for op in operations], args=args)


def _response(reply: list[Any] | bytes | None, now: float) -> GetResponse | None:
    """One entry of a ``READ`` reply: None (missing), an error text, or ``[data, version, pttl]``."""
    if reply is None:
        return None
    if isinstance(reply, bytes):
        raise ComponentError(f"redis: {reply.decode(errors='replace')}")
    data, version, pttl = reply
    return GetResponse(data, version.decode(), now + pttl / 1000 if pttl >= 0 else None)


def _translation(exc: RedisError) -> ComponentError | ETagMismatch:
    """The error a Redis error becomes: the scripts' ETAGMISMATCH replies ``ETagMismatch``, the rest
    ``ComponentError``."""
    if isinstance(exc, ResponseError):
        code, _, detail = str(exc).partition(" ")
        if code == _MISMATCH:
            return ETagMismatch(detail)
    return ComponentError(f"redis: {exc}")


@contextmanager
def _translated() -> Iterator[None]:
    """Redis errors become ``_translation(error)``."""
    try:
        yield
    except RedisError as exc:
        error = _translation(exc)
        raise error from (None if isinstance(error, ETagMismatch) else exc)
