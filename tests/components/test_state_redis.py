"""Redis-specific behaviour of ``state.redis``: the Dapr hash layout, integer etags, TTLs, atomic
transactions, metadata and error translation. Shared semantics are covered by tests/conformance."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from uuid import uuid4

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from building_blocks.component import Metadata
from building_blocks.errors import (
    BulkError,
    ComponentError,
    ETagInvalid,
    ETagMismatch,
    FeatureNotSupported,
    SpecError,
)
from building_blocks.state.base import (
    Concurrency,
    DeleteRequest,
    Feature,
    GetRequest,
    QueryRequest,
    SetRequest,
    TransactionRequest,
)
from building_blocks.state.redis import RedisStateStore

pytestmark = pytest.mark.redis

ADDRESS = "127.0.0.1:6379"


def make_store(**metadata: str) -> RedisStateStore:
    return RedisStateStore("s", Metadata({"redisHost": ADDRESS, **metadata}, "test"))


@pytest.fixture
async def store() -> AsyncIterator[RedisStateStore]:
    s = make_store()
    await s.init()
    yield s
    await s.close()


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    yield client
    await client.aclose()


@pytest.fixture
async def new_key(raw: aioredis.Redis) -> AsyncIterator[Callable[[], str]]:
    """Fresh keys, deleted after the test."""
    keys: list[str] = []

    def make() -> str:
        keys.append(f"test-redis||{uuid4().hex}")
        return keys[-1]

    yield make
    if keys:
        await raw.delete(*keys)


async def version(raw: aioredis.Redis, key: str) -> bytes | None:
    found = await raw.hget(key, "version")
    assert not isinstance(found, str)  # the raw client does not decode
    return found


# --- layout and etags -------------------------------------------------------------------------------


async def test_items_are_hashes_with_data_and_version(store, raw, new_key):
    key = new_key()
    await store.set(SetRequest(key, b'{"a":1}'))
    assert await raw.type(key) == b"hash"
    assert await raw.hgetall(key) == {b"data": b'{"a":1}', b"version": b"1"}
    await store.set(SetRequest(key, b'"two"', etag="1"))
    assert await raw.hmget(key, "data", "version") == [b'"two"', b"2"]
    item = await store.get(GetRequest(key))
    assert item is not None
    assert (item.value, item.etag, item.expires_at) == (b'"two"', "2", None)


async def test_reads_items_written_in_dapr_layout(store, raw, new_key):
    key = new_key()
    await raw.hset(key, mapping={"data": b'"from dapr"', "version": 41})
    item = await store.get(GetRequest(key))
    assert item is not None
    assert (item.value, item.etag) == (b'"from dapr"', "41")
    await store.set(SetRequest(key, b'"next"', etag="41"))
    assert await version(raw, key) == b"42"


async def test_versions_restart_at_one_after_delete(store, raw, new_key):
    key = new_key()
    await store.set(SetRequest(key, b"1"))
    await store.set(SetRequest(key, b"2"))
    await store.delete(DeleteRequest(key, etag="2"))
    assert await raw.exists(key) == 0
    await store.set(SetRequest(key, b"3"))
    assert await version(raw, key) == b"1"


@pytest.mark.parametrize("etag", ["abc", "1.5", "0x1", " "])
async def test_non_integer_etag_is_invalid_and_nothing_changes(store, raw, new_key, etag):
    key = new_key()
    await store.set(SetRequest(key, b"v"))
    with pytest.raises(ETagInvalid):
        await store.set(SetRequest(key, b"w", etag=etag))
    with pytest.raises(ETagInvalid):
        await store.delete(DeleteRequest(key, etag=etag))
    with pytest.raises(ETagInvalid):
        await store.transact(TransactionRequest([SetRequest(new_key(), b"x"), DeleteRequest(key, etag=etag)]))
    assert await raw.hmget(key, "data", "version") == [b"v", b"1"]


async def test_integer_etags_are_compared_as_numbers(store, raw, new_key):
    key = new_key()
    await store.set(SetRequest(key, b"v"))
    await store.set(SetRequest(key, b"w", etag="01"))
    assert await version(raw, key) == b"2"


async def test_etag_mismatches(store, raw, new_key):
    key, missing = new_key(), new_key()
    await store.set(SetRequest(key, b"v"))
    with pytest.raises(ETagMismatch):
        await store.set(SetRequest(key, b"w", etag="2"))
    with pytest.raises(ETagMismatch):
        await store.delete(DeleteRequest(key, etag="7"))
    with pytest.raises(ETagMismatch):
        await store.set(SetRequest(missing, b"w", etag="1"))
    with pytest.raises(ETagMismatch):
        await store.delete(DeleteRequest(missing, etag="1"))
    with pytest.raises(ETagMismatch, match="first-write"):
        await store.set(SetRequest(key, b"w", concurrency=Concurrency.FIRST_WRITE))
    await store.delete(DeleteRequest(missing))
    assert await raw.hmget(key, "data", "version") == [b"v", b"1"]
    assert await raw.exists(missing) == 0


async def test_first_write_with_matching_etag_succeeds(store, raw, new_key):
    key = new_key()
    await store.set(SetRequest(key, b"v", concurrency=Concurrency.FIRST_WRITE))
    await store.set(SetRequest(key, b"w", etag="1", concurrency=Concurrency.FIRST_WRITE))
    assert await raw.hmget(key, "data", "version") == [b"w", b"2"]


# --- TTL --------------------------------------------------------------------------------------------


async def test_ttl_sets_expiry_and_expires_at(store, raw, new_key):
    key = new_key()
    before = time.time()
    await store.set(SetRequest(key, b"v", ttl=100))
    assert 99_000 < await raw.pttl(key) <= 100_000
    item = await store.get(GetRequest(key))
    assert item is not None and item.expires_at is not None
    assert before + 99 < item.expires_at <= time.time() + 100


async def test_write_without_ttl_persists(store, raw, new_key):
    key = new_key()
    await store.set(SetRequest(key, b"v", ttl=100))
    await store.set(SetRequest(key, b"w"))
    assert await raw.pttl(key) == -1
    item = await store.get(GetRequest(key))
    assert item is not None and item.expires_at is None


@pytest.mark.parametrize("ttl", [0, -1])
async def test_non_positive_ttl_means_no_expiry(store, raw, new_key, ttl):
    key = new_key()
    await store.set(SetRequest(key, b"v", ttl=100))
    await store.set(SetRequest(key, b"w", ttl=ttl))
    assert await raw.pttl(key) == -1


async def test_expired_items_are_gone(store, raw, new_key):
    key = new_key()
    await store.set(SetRequest(key, b"v", ttl=100))
    await raw.pexpire(key, 1)
    await asyncio.sleep(0.01)
    assert await store.get(GetRequest(key)) is None
    with pytest.raises(ETagMismatch):
        await store.set(SetRequest(key, b"w", etag="1"))


async def test_default_ttl_from_metadata(raw, new_key):
    async with make_store(ttlInSeconds="100") as s:
        default, explicit, forever = new_key(), new_key(), new_key()
        await s.set(SetRequest(default, b"v"))
        await s.set(SetRequest(explicit, b"v", ttl=5))
        await s.set(SetRequest(forever, b"v", ttl=-1))
        await s.transact(TransactionRequest([SetRequest(default, b"w")]))
        assert 99_000 < await raw.pttl(default) <= 100_000
        assert 0 < await raw.pttl(explicit) <= 5_000
        assert await raw.pttl(forever) == -1
        item = await s.get(GetRequest(default))
        assert item is not None and item.expires_at is not None


# --- transactions -----------------------------------------------------------------------------------


async def test_transaction_applies_in_order(store, raw, new_key):
    a, b, c = new_key(), new_key(), new_key()
    await store.set(SetRequest(a, b"a"))
    await store.set(SetRequest(c, b"c"))
    await store.transact(
        TransactionRequest(
            [
                SetRequest(a, b"a2", etag="1", ttl=100),
                SetRequest(b, b"b", concurrency=Concurrency.FIRST_WRITE),
                SetRequest(b, b"b2"),
                DeleteRequest(c, etag="1"),
                SetRequest(c, b"c2", concurrency=Concurrency.FIRST_WRITE),
            ]
        )
    )
    assert await raw.hmget(a, "data", "version") == [b"a2", b"2"]
    assert await raw.pttl(a) > 0
    assert await raw.hmget(b, "data", "version") == [b"b2", b"2"]
    assert await raw.hmget(c, "data", "version") == [b"c2", b"1"]


async def test_mismatching_transaction_changes_nothing(store, raw, new_key):
    a, b, c = new_key(), new_key(), new_key()
    await store.set(SetRequest(a, b"a", ttl=100))
    await store.set(SetRequest(c, b"c"))
    with pytest.raises(ETagMismatch):
        await store.transact(
            TransactionRequest(
                [
                    SetRequest(a, b"a2"),
                    SetRequest(b, b"b"),
                    DeleteRequest(c),
                    SetRequest(new_key(), b"x", etag="3"),  # missing key: mismatch
                ]
            )
        )
    assert await raw.hmget(a, "data", "version") == [b"a", b"1"]
    assert await raw.pttl(a) > 0
    assert await raw.exists(b) == 0
    assert await raw.hmget(c, "data", "version") == [b"c", b"1"]


@pytest.mark.parametrize(
    "second",
    [
        SetRequest("", b"y", etag="2"),  # the version after the first set, still refused
        DeleteRequest("", etag="1"),
        SetRequest("", b"y", concurrency=Concurrency.FIRST_WRITE),
    ],
)
async def test_earlier_operations_count_in_checks(store, raw, new_key, second):
    key = new_key()
    await store.set(SetRequest(key, b"v"))
    second = replace(second, key=key)
    with pytest.raises(ETagMismatch, match="earlier in the transaction"):
        await store.transact(TransactionRequest([SetRequest(key, b"x", etag="1"), second]))
    assert await raw.hmget(key, "data", "version") == [b"v", b"1"]


async def test_empty_transaction_is_a_no_op(store):
    await store.transact(TransactionRequest([]))


# --- bulk -------------------------------------------------------------------------------------------


async def test_bulk_get_in_order_with_missing_and_wrong_type(store, raw, new_key):
    a, missing, text = new_key(), new_key(), new_key()
    await store.set(SetRequest(a, b"a", ttl=100))
    await raw.set(text, "not a hash")
    items = await store.bulk_get([GetRequest(a), GetRequest(missing), GetRequest(text), GetRequest(a)])
    assert [i.key for i in items] == [a, missing, text, a]
    assert items[0].response is not None and items[0].response.value == b"a"
    assert items[0].response.etag == "1" and items[0].response.expires_at is not None
    assert (items[1].response, items[1].error) == (None, "")
    assert items[2].response is None and "WRONGTYPE" in items[2].error
    assert items[3].response is not None and items[3].response.value == b"a"
    assert await store.bulk_get([]) == []


async def test_bulk_set_partial_failure(store, raw, new_key):
    ok, bad = new_key(), new_key()
    await store.set(SetRequest(bad, b"v"))
    with pytest.raises(BulkError) as caught:
        await store.bulk_set([SetRequest(ok, b"ok"), SetRequest(bad, b"w", etag="9")])
    assert [key for key, _ in caught.value.failures] == [bad]
    assert isinstance(caught.value.first(ETagMismatch), ETagMismatch)
    assert await raw.hget(ok, "data") == b"ok"
    assert await raw.hget(bad, "data") == b"v"


# --- errors, metadata, lifecycle --------------------------------------------------------------------


async def test_wrong_type_key_is_component_error(store, raw, new_key):
    key = new_key()
    await raw.set(key, "not a hash")
    with pytest.raises(ComponentError, match="WRONGTYPE") as caught:
        await store.get(GetRequest(key))
    assert not isinstance(caught.value, RedisError)
    with pytest.raises(ComponentError, match="WRONGTYPE"):
        await store.set(SetRequest(key, b"v"))
    assert await raw.get(key) == b"not a hash"


async def test_unreachable_server_is_component_error():
    s = RedisStateStore("s", Metadata({"redisHost": "127.0.0.1:1", "dialTimeout": "200ms", "maxRetries": "0"}))
    with pytest.raises(ComponentError) as caught:
        await s.init()
    assert not isinstance(caught.value, RedisError)
    assert isinstance(caught.value.__cause__, RedisError)
    with pytest.raises(ComponentError):
        await s.get(GetRequest("k"))
    with pytest.raises(ComponentError):
        await s.ping()
    await s.close()


async def test_ping_and_close(store):
    await store.ping()
    await store.close()
    await store.close()
    with pytest.raises(ComponentError):
        await store.ping()


def test_features_exclude_query():
    assert make_store().features == {Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL}


async def test_query_is_not_supported(store):
    with pytest.raises(FeatureNotSupported):
        await store.query(QueryRequest(None))


def test_redis_host_is_required():
    with pytest.raises(SpecError, match="redisHost"):
        RedisStateStore("s", Metadata({"redisPassword": "x"}, "test"))


@pytest.mark.parametrize("name", ["ttlInSeconds", "redisDB", "poolSize", "maxRetries"])
def test_bad_integer_metadata_is_spec_error(name):
    with pytest.raises(SpecError, match=name):
        make_store(**{name: "many"})


def test_bad_boolean_and_duration_metadata_are_spec_errors():
    with pytest.raises(SpecError, match="enableTLS"):
        make_store(enableTLS="maybe")
    with pytest.raises(SpecError, match="dialTimeout"):
        make_store(dialTimeout="soon")


async def test_metadata_names_are_case_insensitive_and_port_defaults(raw, new_key):
    key = new_key()
    metadata = Metadata({"REDISHOST": "127.0.0.1", "redisport": "6379", "RedisDB": "0"}, "test")
    async with RedisStateStore("s", metadata) as s:
        await s.set(SetRequest(key, b"v"))
    assert await raw.hget(key, "data") == b"v"


async def test_redis_db_is_used(raw, new_key):
    key = new_key()
    async with make_store(redisDB="3") as s:
        await s.set(SetRequest(key, b"v"))
        assert await raw.exists(key) == 0
        assert await s.get(GetRequest(key)) is not None
        await s.delete(DeleteRequest(key))
