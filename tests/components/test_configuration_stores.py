"""Configuration components on their own: Dapr's Redis value format and keyspace flags, recovery of the
watch connections of Redis and PostgreSQL, PostgreSQL tables made as Dapr documents them, and big values."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from building_blocks.component import Metadata
from building_blocks.configuration.base import (
    ConfigurationItem,
    ConfigurationStore,
    ConfigurationUpdate,
    DeleteRequest,
    GetRequest,
    SaveItem,
    SaveRequest,
    SubscribeRequest,
    next_version,
)
from building_blocks.configuration.postgresql import PostgreSQLConfigurationStore
from building_blocks.configuration.redis import RedisConfigurationStore, _needed_flags, parse_value
from building_blocks.errors import ComponentError, SpecError
from tests.conformance.test_configuration import pg_connect
from tests.services import require_postgres, require_redis


class Updates:
    def __init__(self) -> None:
        self.received: list[ConfigurationUpdate] = []

    def __call__(self, update: ConfigurationUpdate) -> None:
        self.received.append(update)

    async def wait(self, count: int, timeout: float = 5.0) -> list[ConfigurationUpdate]:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                await asyncio.sleep(0.01)
        return self.received


# -- pure rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"v||3", ConfigurationItem("v", "3")),
        (b"plain", ConfigurationItem("plain", "")),
        (b"a||b||7", ConfigurationItem("a||b", "7")),
        (b"v||", ConfigurationItem("v", "")),
        (b"", None),
        (b"||2", None),
        (None, None),
    ],
)
def test_redis_values_are_value_and_version(raw: bytes | None, expected: ConfigurationItem | None) -> None:
    assert parse_value(raw) == expected


@pytest.mark.parametrize(
    ("current", "added"), [("", "Kg$xe"), ("Ex", "Kg$e"), ("AK", ""), ("KA", ""), ("g$xeK", ""), ("A", "K")]
)
def test_keyspace_flags_are_added_not_replaced(current: str, added: str) -> None:
    assert _needed_flags(current) == added


@pytest.mark.parametrize(("current", "expected"), [((), "1"), ((None,), "1"), (("3",), "4"), (("x", "2"), "3")])
def test_next_version(current: tuple[str | None, ...], expected: str) -> None:
    assert next_version(*current) == expected


def test_redis_cluster_is_refused_at_load() -> None:
    with pytest.raises(SpecError, match="redisType"):
        RedisConfigurationStore("c", Metadata({"redisHost": "h:1", "redisType": "cluster"}, "f.yaml"))


def test_postgresql_needs_a_table_and_a_valid_channel() -> None:
    with pytest.raises(SpecError, match="'table' is required"):
        PostgreSQLConfigurationStore("c", Metadata({"connectionString": "host=h"}, "f.yaml"))
    with pytest.raises(SpecError, match="notifyChannel"):
        PostgreSQLConfigurationStore(
            "c", Metadata({"connectionString": "host=h", "table": "t", "notifyChannel": "Bad Name"}, "f.yaml")
        )


# -- Redis --------------------------------------------------------------------------------------------------------


@pytest.fixture
async def redis_store() -> AsyncIterator[RedisConfigurationStore]:
    store = RedisConfigurationStore(f"cfg-{uuid.uuid4().hex[:8]}", Metadata({"redisHost": require_redis()}))
    await store.init()
    try:
        yield store
    finally:
        await store.close()


async def test_redis_watch_survives_a_killed_connection(redis_store: RedisConfigurationStore) -> None:
    key = f"cfgtest-{uuid.uuid4().hex}"
    updates = Updates()
    await redis_store.subscribe(SubscribeRequest((key,)), updates)
    client = aioredis.Redis.from_url(f"redis://{require_redis()}")
    try:
        name = f"layotto-configuration-{redis_store.name}"
        clients = await client.client_list(_type="pubsub")
        ids = [c["id"] for c in clients if c.get("name") == name]
        assert len(ids) == 1, clients
        killed = await client.execute_command("CLIENT", "KILL", "ID", ids[0])
        assert killed == 1
        async with asyncio.timeout(10):  # reconnected and subscribed again
            while not [c for c in await client.client_list(_type="pubsub") if c.get("name") == name]:
                await asyncio.sleep(0.1)
        await client.set(key, "after||9")
        [update] = await updates.wait(1)
        assert update.items == {key: ConfigurationItem("after", "9")}
    finally:
        await client.delete(key)
        await client.aclose()


async def test_redis_key_watched_by_name_and_by_star_reaches_each_subscription_once(
    redis_store: RedisConfigurationStore,
) -> None:
    key = f"cfgtest-{uuid.uuid4().hex}"
    by_name, by_star = Updates(), Updates()
    named = await redis_store.subscribe(SubscribeRequest((key,)), by_name)
    star = await redis_store.subscribe(SubscribeRequest(()), by_star)
    try:
        await redis_store.save(SaveRequest([SaveItem(key, "v")]))
        await by_name.wait(1)
        async with asyncio.timeout(5):
            while not [u for u in by_star.received if key in u.items]:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        assert [u.id for u in by_name.received] == [named.id]
        assert [u.id for u in by_star.received if key in u.items] == [star.id]
    finally:
        await redis_store.delete(DeleteRequest((key,)))


async def test_redis_save_over_a_key_of_another_type_fails(redis_store: RedisConfigurationStore) -> None:
    key = f"cfgtest-{uuid.uuid4().hex}"
    client = aioredis.Redis.from_url(f"redis://{require_redis()}")
    try:
        await client.hset(key, "data", "x")
        with pytest.raises(ComponentError, match="WRONGTYPE"):
            await redis_store.save(SaveRequest([SaveItem(key, "v")]))
        assert await redis_store.get(GetRequest((key,))) == {}
    finally:
        await client.delete(key)
        await client.aclose()


# -- PostgreSQL ------------------------------------------------------------------------------------------------------


@pytest.fixture
async def table() -> AsyncIterator[str]:
    require_postgres()
    name = f"cfg_{uuid.uuid4().hex[:12]}"
    yield name
    connection = await pg_connect()
    await connection.execute(f"DROP TABLE IF EXISTS {name}")
    await connection.execute(f"DROP FUNCTION IF EXISTS {name}_dapr_notify() CASCADE")
    await connection.close()


async def _postgres(table: str, **metadata: str) -> ConfigurationStore:
    store = PostgreSQLConfigurationStore(
        "configstore", Metadata({"connectionString": require_postgres(), "table": table, **metadata})
    )
    await store.init()
    return store


async def test_postgresql_watch_survives_a_terminated_connection(table: str) -> None:
    store = await _postgres(table, notifyChannel=f"ch_{table}")
    connection = await pg_connect()
    try:
        updates = Updates()
        await store.subscribe(SubscribeRequest(("k",)), updates)
        terminated = await connection.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"layotto-configuration-listen:{table}",
        )
        assert [row[0] for row in terminated] == [True]
        async with asyncio.timeout(10):  # listening again
            while not await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                f"layotto-configuration-listen:{table}",
            ):
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)
        await connection.execute(f"INSERT INTO {table} (key, value, version) VALUES ('k', 'back', '3')")
        [update] = await updates.wait(1)
        assert update.items == {"k": ConfigurationItem("back", "3")}
    finally:
        await connection.close()
        await store.close()


async def test_postgresql_uses_a_table_made_as_dapr_documents_it(table: str) -> None:
    """No primary key, Dapr's trigger function on its own channel, the channel given per request."""
    channel = f"ch_{table}"
    connection = await pg_connect()
    await connection.execute(
        f"CREATE TABLE {table} (KEY VARCHAR NOT NULL, VALUE VARCHAR NOT NULL, VERSION VARCHAR NOT NULL, METADATA JSON)"
    )
    await connection.execute(
        f"""
        CREATE FUNCTION {table}_dapr_notify() RETURNS TRIGGER AS $$
        DECLARE data json; notification json;
        BEGIN
            IF (TG_OP = 'DELETE') THEN data = row_to_json(OLD); ELSE data = row_to_json(NEW); END IF;
            notification = json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data);
            PERFORM pg_notify('{channel}', notification::text);
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql;
        CREATE TRIGGER {table}_config AFTER INSERT OR UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE PROCEDURE {table}_dapr_notify();
        """
    )
    store = await _postgres(table)
    try:
        await connection.execute(
            f"INSERT INTO {table} VALUES ('a', 'old', '1', NULL), ('a', 'new', '2', '{{\"m\": \"x\"}}'), ('b', 'v', 'x', '{{}}')"
        )
        assert await store.get(GetRequest()) == {
            "a": ConfigurationItem("new", "2", {"m": "x"}),
            "b": ConfigurationItem("v", "x"),
        }
        updates = Updates()
        await store.subscribe(SubscribeRequest(("a",), {"pgNotifyChannel": channel}), updates)
        await store.save(SaveRequest([SaveItem("a", "saved", {"by": "layotto"})]))
        # Both rows of 'a' were updated alike: PostgreSQL folds their identical notifications into one.
        [saved] = await updates.wait(1)
        assert saved.items == {"a": ConfigurationItem("saved", "3", {"by": "layotto"})}
        assert await store.get(GetRequest(("a",))) == {"a": ConfigurationItem("saved", "3", {"by": "layotto"})}
        await connection.execute(f"DELETE FROM {table} WHERE key = 'a'")
        received = await updates.wait(2)
        assert received[1].items == {"a": None}
    finally:
        await store.close()
        await connection.close()


async def test_postgresql_values_over_the_notify_limit_are_read_back(table: str) -> None:
    store = await _postgres(table, notifyChannel=f"ch_{table}")
    connection = await pg_connect()
    try:
        updates = Updates()
        await store.subscribe(SubscribeRequest(("big",)), updates)
        value = "x" * 20_000
        await connection.execute(f"INSERT INTO {table} (key, value, version) VALUES ('big', $1, '1')", value)
        [update] = await updates.wait(1)
        assert update.items == {"big": ConfigurationItem(value, "1")}
    finally:
        await connection.close()
        await store.close()
