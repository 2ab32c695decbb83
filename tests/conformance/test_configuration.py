"""The configuration conformance suite: every configuration store, through the HTTP API, with a real
subscriber app receiving Dapr's update POSTs over HTTP, held to the same behaviour.

Stores backed by something other processes can write to (SQLite file, Redis, PostgreSQL) also prove that a
change made directly in the backend, not through the sidecar, reaches the app within a second. A new store
joins by adding one entry to ``STORES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import grpc
import orjson
import pytest
import redis.asyncio as aioredis
from dapr.proto.runtime.v1 import configuration_pb2

from app.grpc.layotto import runtime_pb2
from tests.grpc.fronts import GrpcFront, grpc_front
from tests.services import require_postgres, require_redis
from tests.sidecar import Sidecar, component_yaml, running_sidecar
from tests.subscriber_app import Delivery, SubscriberApp, serving

STORE = "configstore"
WITHIN = 1.0  # seconds for a change to reach the app


class Writer(Protocol):
    """Writes to the backend directly, as another program would (not through the sidecar)."""

    async def set(self, key: str, value: str, version: str, metadata: dict[str, str] | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...


class RedisWriter:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def set(self, key: str, value: str, version: str, metadata: dict[str, str] | None = None) -> None:
        await self.client.set(key, f"{value}||{version}")

    async def delete(self, key: str) -> None:
        await self.client.delete(key)


class PostgresWriter:
    def __init__(self, connection: asyncpg.Connection, table: str) -> None:
        self.connection = connection
        self.table = table

    async def set(self, key: str, value: str, version: str, metadata: dict[str, str] | None = None) -> None:
        updated = await self.connection.execute(
            f"UPDATE {self.table} SET value = $2, version = $3, metadata = $4::json WHERE key = $1",
            key,
            value,
            version,
            orjson.dumps(metadata or {}).decode(),
        )
        if updated == "UPDATE 0":
            await self.connection.execute(
                f"INSERT INTO {self.table} (key, value, version, metadata) VALUES ($1, $2, $3, $4::json)",
                key,
                value,
                version,
                orjson.dumps(metadata or {}).decode(),
            )

    async def delete(self, key: str) -> None:
        await self.connection.execute(f"DELETE FROM {self.table} WHERE key = $1", key)


SQLITE_WRITER = textwrap.dedent(
    """
    import json, sqlite3, sys
    database, action, key = sys.argv[1:4]
    connection = sqlite3.connect(database, timeout=5)
    with connection:
        if action == "set":
            value, version, metadata = sys.argv[4:7]
            connection.execute(
                "INSERT INTO configuration (key, value, version, metadata) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version,"
                " metadata = excluded.metadata",
                (key, value, version, metadata),
            )
        else:
            connection.execute("DELETE FROM configuration WHERE key = ?", (key,))
    """
)


class SQLiteWriter:
    """Another process (a plain ``sqlite3`` client) writing to the sidecar's file."""

    def __init__(self, database: Path) -> None:
        self.database = database

    async def _run(self, *args: str) -> None:
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", SQLITE_WRITER, str(self.database), *args)
        assert await process.wait() == 0

    async def set(self, key: str, value: str, version: str, metadata: dict[str, str] | None = None) -> None:
        await self._run("set", key, value, version, orjson.dumps(metadata or {}).decode())

    async def delete(self, key: str) -> None:
        await self._run("delete", key)


@dataclass(frozen=True)
class StoreCase:
    component_type: str
    #: The component's metadata, for the test's directory and a fresh name (table) of its own.
    metadata: Callable[[Path, str], dict[str, str]]
    #: Opens a direct writer to the backend, or None when nothing but the sidecar can write to it.
    writer: Callable[[Path, str], contextlib.AbstractAsyncContextManager[Writer]] | None
    keeps_metadata: bool = True
    #: Whether "every key" means only this test's keys (a fresh table or file) or the whole shared backend.
    isolated: bool = True


async def pg_connect() -> asyncpg.Connection:
    """A plain connection from the libpq ``key=value`` test DSN."""
    fields = dict(part.split("=", 1) for part in require_postgres().split())
    return await asyncpg.connect(
        host=fields.get("host"),
        port=int(fields.get("port", 5432)),
        user=fields.get("user"),
        password=fields.get("password"),
        database=fields.get("database") or fields.get("dbname"),
    )


@contextlib.asynccontextmanager
async def _redis_writer(_: Path, __: str) -> AsyncIterator[Writer]:
    client = aioredis.Redis.from_url(f"redis://{require_redis()}")
    try:
        yield RedisWriter(client)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _postgres_writer(_: Path, table: str) -> AsyncIterator[Writer]:
    connection = await pg_connect()
    try:
        yield PostgresWriter(connection, table)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def _sqlite_writer(tmp: Path, _: str) -> AsyncIterator[Writer]:
    yield SQLiteWriter(tmp / "configuration.db")


STORES = {
    "in-memory": StoreCase("configuration.in-memory", lambda _, __: {}, None),
    "sqlite": StoreCase(
        "configuration.sqlite", lambda tmp, _: {"connectionString": str(tmp / "configuration.db")}, _sqlite_writer
    ),
    "redis": StoreCase(
        "configuration.redis",
        lambda _, __: {"redisHost": require_redis()},
        _redis_writer,
        keeps_metadata=False,
        isolated=False,
    ),
    "postgresql": StoreCase(
        "configuration.postgresql",
        lambda _, table: {"connectionString": require_postgres(), "table": table, "notifyChannel": f"ch_{table}"},
        _postgres_writer,
    ),
}
COMPONENT_TYPES = frozenset(case.component_type for case in STORES.values())  # checked by test_registry_coverage


@dataclass
class Store:
    name: str
    case: StoreCase
    sidecar: Sidecar
    app: SubscriberApp
    prefix: str

    def key(self, name: str = "") -> str:
        return f"{self.prefix}{name or uuid.uuid4().hex[:8]}"

    async def save(self, *items: dict[str, Any]) -> None:
        response = await self.sidecar.client.post(
            f"/v1.0-alpha1/configuration/{STORE}", content=orjson.dumps({"items": list(items)})
        )
        assert response.status_code == 204, response.text

    async def delete(self, *keys: str) -> None:
        response = await self.sidecar.client.delete(f"/v1.0-alpha1/configuration/{STORE}", params={"key": keys})
        assert response.status_code == 204, response.text

    async def get(self, *keys: str, version: str = "v1.0") -> Any:
        response = await self.sidecar.client.get(f"/{version}/configuration/{STORE}", params={"key": keys})
        if response.status_code == 204:
            assert response.content == b""
            return None
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        return response.json()

    async def subscribe(self, *keys: str) -> str:
        response = await self.sidecar.client.get(f"/v1.0/configuration/{STORE}/subscribe", params={"key": keys})
        assert response.status_code == 200, response.text
        subscription_id: str = response.json()["id"]
        return subscription_id

    async def unsubscribe(self, subscription_id: str) -> Any:
        response = await self.sidecar.client.get(f"/v1.0/configuration/{STORE}/{subscription_id}/unsubscribe")
        return response.status_code, response.json()

    def updates(self, subscription_id: str, key: str | None = None) -> list[Delivery]:
        return [
            d
            for d in self.app.deliveries
            if d.path.startswith(f"/configuration/{STORE}/")
            and d.event["id"] == subscription_id
            and (key is None or d.path == f"/configuration/{STORE}/{key}")
        ]

    async def wait_update(self, subscription_id: str, key: str, count: int = 1, within: float = WITHIN) -> Delivery:
        """The ``count``-th update of ``key`` for the subscription, which must arrive ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while len(self.updates(subscription_id, key)) < count:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(
                f"update #{count} of {key} for {subscription_id} did not arrive within {within}s; "
                f"got {[d.event for d in self.updates(subscription_id)]}"
            ) from None
        return self.updates(subscription_id, key)[count - 1]


@contextlib.asynccontextmanager
async def _cleanup(case_name: str, prefix: str, table: str) -> AsyncIterator[None]:
    try:
        yield
    finally:
        if case_name == "redis":
            client = aioredis.Redis.from_url(f"redis://{require_redis()}")
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
        elif case_name == "postgresql":
            connection = await pg_connect()
            await connection.execute(f"DROP TABLE IF EXISTS {table}")
            await connection.close()


def _write(tmp_path: Path, case: StoreCase, table: str) -> None:
    (tmp_path / "configuration.yaml").write_text(
        component_yaml(STORE, case.component_type, case.metadata(tmp_path, table))
    )


@pytest.fixture(params=list(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    case = STORES[request.param]
    table = f"cfg_{uuid.uuid4().hex[:12]}"
    prefix = f"cfgtest-{uuid.uuid4().hex[:8]}-"
    _write(tmp_path, case, table)
    async with (
        _cleanup(request.param, prefix, table),
        serving(SubscriberApp()) as app,
        running_sidecar(tmp_path, app_port=app.port) as sidecar,
    ):
        yield Store(request.param, case, sidecar, app, prefix)


@pytest.fixture
async def writer(store: Store, tmp_path: Path) -> AsyncIterator[Writer]:
    if store.case.writer is None:
        pytest.skip(f"nothing but the sidecar can write to {store.name}")
    table = next(iter(store.sidecar.runtime.configuration.components.values())).metadata.get("table", "")
    async with store.case.writer(tmp_path, table) as opened:
        yield opened


def item(value: str, version: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"value": value, "version": version}
    if metadata:
        fields["metadata"] = metadata
    return fields


# -- C-H1 / C-2..C-4: get -------------------------------------------------------------------------------------


async def test_get_by_keys_and_all_keys(store: Store) -> None:
    a, b, c = store.key("a"), store.key("b"), store.key("c")
    meta = {"owner": "team-x"}
    await store.save({"key": a, "value": "va"}, {"key": b, "value": "vb", "metadata": meta}, {"key": c, "value": "vc"})
    b_item = item("vb", "1", meta if store.case.keeps_metadata else None)
    assert await store.get(a, b) == {a: item("va", "1"), b: b_item}
    assert await store.get(a, store.key("missing")) == {a: item("va", "1")}
    assert await store.get(a, version="v1.0-alpha1") == {a: item("va", "1")}
    everything = await store.get()
    expected = {a: item("va", "1"), b: b_item, c: item("vc", "1")}
    if store.case.isolated:
        assert everything == expected
    else:
        assert {k: v for k, v in everything.items() if k.startswith(store.prefix)} == expected


async def test_get_of_missing_keys_is_204(store: Store) -> None:
    assert await store.get(store.key(), store.key()) is None


async def test_saves_assign_increasing_versions_and_delete_removes(store: Store) -> None:
    k, other = store.key(), store.key()
    await store.save({"key": k, "value": "one"}, {"key": other, "value": "x"})
    await store.save({"key": k, "value": "two"})
    assert await store.get(k, other) == {k: item("two", "2"), other: item("x", "1")}
    await store.delete(k, store.key("never-existed"))
    assert await store.get(k, other) == {other: item("x", "1")}
    await store.save({"key": k, "value": "back"})
    assert await store.get(k) == {k: item("back", "1")}


async def test_direct_writes_are_read_with_their_own_versions(store: Store, writer: Writer) -> None:
    k = store.key()
    await writer.set(k, "outside", "7")
    assert await store.get(k) == {k: item("outside", "7")}
    await store.save({"key": k, "value": "inside"})
    assert await store.get(k) == {k: item("inside", "8")}


# -- C-H2 / C-H3 / C-5..C-7: subscriptions ----------------------------------------------------------------------


async def test_subscribe_returns_a_unique_id_per_subscription(store: Store) -> None:
    k = store.key()
    ids = {await store.subscribe(k), await store.subscribe(k), await store.subscribe()}
    assert len(ids) == 3
    assert all(isinstance(i, str) and len(i) == 36 for i in ids)


async def test_a_direct_change_reaches_the_app_within_a_second_in_daprs_format(store: Store, writer: Writer) -> None:
    k, unwatched = store.key(), store.key()
    by_key = await store.subscribe(k)
    every_key = await store.subscribe()
    await writer.set(k, "v", "2", {"region": "eu"})
    update = await store.wait_update(by_key, k)
    assert update.path == f"/configuration/{STORE}/{k}"
    assert update.headers["content-type"] == "application/json"
    expected = item("v", "2", {"region": "eu"} if store.case.keeps_metadata else None)
    assert update.event == {"id": by_key, "items": {k: expected}}
    assert (await store.wait_update(every_key, k)).event == {"id": every_key, "items": {k: expected}}

    await writer.set(unwatched, "x", "1")
    await store.wait_update(every_key, unwatched)  # a key created later is seen by the all-keys subscription
    assert store.updates(by_key, unwatched) == []

    await writer.delete(k)
    deleted = await store.wait_update(by_key, k, count=2)
    assert deleted.event == {"id": by_key, "items": {k: {}}}


async def test_sidecar_writes_notify_subscribers(store: Store) -> None:
    k = store.key()
    subscription = await store.subscribe(k)
    await store.save({"key": k, "value": "first"})
    assert (await store.wait_update(subscription, k)).event == {"id": subscription, "items": {k: item("first", "1")}}
    await store.save({"key": k, "value": "second"})
    assert (await store.wait_update(subscription, k, 2)).event["items"] == {k: item("second", "2")}
    await store.delete(k)
    assert (await store.wait_update(subscription, k, 3)).event["items"] == {k: {}}


async def test_one_post_per_changed_key(store: Store) -> None:
    a, b, c = store.key(), store.key(), store.key()
    subscription = await store.subscribe(a, b)
    await store.save({"key": a, "value": "1"}, {"key": b, "value": "2"}, {"key": c, "value": "3"})
    for k, value in ((a, "1"), (b, "2")):
        update = await store.wait_update(subscription, k)
        assert update.event == {"id": subscription, "items": {k: item(value, "1")}}
    await asyncio.sleep(0.3)
    assert sorted(d.path for d in store.updates(subscription)) == sorted(f"/configuration/{STORE}/{k}" for k in (a, b))


# -- C-H4 / C-8: unsubscribe and independence ----------------------------------------------------------------------


async def test_unsubscribing_one_subscription_leaves_the_others_delivering(store: Store) -> None:
    k = store.key()
    first, second, everything = await store.subscribe(k), await store.subscribe(k), await store.subscribe()
    await store.save({"key": k, "value": "a"})
    for subscription in (first, second, everything):
        await store.wait_update(subscription, k)

    assert await store.unsubscribe(first) == (200, {"ok": True})
    await store.save({"key": k, "value": "b"})
    await store.wait_update(second, k, 2)
    await store.wait_update(everything, k, 2)
    await asyncio.sleep(0.3)
    assert len(store.updates(first)) == 1

    assert await store.unsubscribe(everything) == (200, {"ok": True})
    await store.save({"key": k, "value": "c"})
    assert (await store.wait_update(second, k, 3)).event["items"] == {k: item("c", "3")}
    await asyncio.sleep(0.3)
    assert len(store.updates(everything, k)) == 2 and len(store.updates(first)) == 1

    status, body = await store.unsubscribe(first)
    assert status == 400 and body == {
        "ok": False,
        "message": f"failed to unsubscribe to configuration request {first}: subscription with id {first} does not exist",
    }


async def test_unsubscribe_stops_deliveries_of_direct_changes(store: Store, writer: Writer) -> None:
    k = store.key()
    gone, kept = await store.subscribe(k), await store.subscribe(k)
    assert await store.unsubscribe(gone) == (200, {"ok": True})
    await writer.set(k, "after", "1")
    await store.wait_update(kept, k)
    await asyncio.sleep(0.5)
    assert store.updates(gone) == []


async def test_subscriptions_end_when_the_runtime_stops(tmp_path: Path, writer: Writer, store: Store) -> None:
    k = store.key()
    await store.subscribe(k)
    await store.sidecar.runtime.close()
    await writer.set(k, "after-stop", "1")
    await asyncio.sleep(0.5)
    assert store.app.deliveries == [d for d in store.app.deliveries if not d.path.startswith("/configuration/")]


# -- the gRPC front: the same block through Dapr's and Layotto's gRPC methods --------------------------------
#
# Over gRPC a subscription is a stream (no app is needed): its first message carries only the id, then one
# message per change, and unsubscribing ends it.


@dataclass
class GrpcConfig:
    name: str
    case: StoreCase
    front: GrpcFront
    prefix: str

    def key(self) -> str:
        return f"{self.prefix}{uuid.uuid4().hex[:8]}"

    async def save(self, key: str, value: str) -> None:
        items = [runtime_pb2.ConfigurationItem(key=key, content=value)]
        await self.front.layotto.SaveConfiguration(runtime_pb2.SaveConfigurationRequest(store_name=STORE, items=items))

    async def get(self, *keys: str) -> dict[str, tuple[str, str]]:
        answer = await self.front.dapr.GetConfigurationAlpha1(
            configuration_pb2.GetConfigurationRequest(store_name=STORE, keys=list(keys))
        )
        return {key: (item.value, item.version) for key, item in answer.items.items()}


@pytest.fixture(params=list(STORES))
async def over_grpc(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GrpcConfig]:
    case = STORES[request.param]
    table = f"cfg_{uuid.uuid4().hex[:12]}"
    prefix = f"cfgtest-{uuid.uuid4().hex[:8]}-"
    _write(tmp_path, case, table)
    async with (
        _cleanup(request.param, prefix, table),
        running_sidecar(tmp_path, grpc=True) as sidecar,
        grpc_front(sidecar) as front,
    ):
        yield GrpcConfig(request.param, case, front, prefix)


async def test_grpc_get_save_and_delete(over_grpc: GrpcConfig) -> None:
    a, b = over_grpc.key(), over_grpc.key()
    await over_grpc.save(a, "one")
    await over_grpc.save(a, "two")
    await over_grpc.save(b, "bee")
    assert await over_grpc.get(a, b, over_grpc.key()) == {a: ("two", "2"), b: ("bee", "1")}
    await over_grpc.front.layotto.DeleteConfiguration(
        runtime_pb2.DeleteConfigurationRequest(store_name=STORE, keys=[a])
    )
    assert await over_grpc.get(a, b) == {b: ("bee", "1")}


async def test_grpc_subscription_streams_the_id_then_changes_until_unsubscribed(over_grpc: GrpcConfig) -> None:
    key = over_grpc.key()
    request = configuration_pb2.SubscribeConfigurationRequest(store_name=STORE, keys=[key])
    stream = over_grpc.front.dapr.SubscribeConfigurationAlpha1(request)
    first = await stream.read()
    assert first.id and not first.items  # the id alone
    await over_grpc.save(key, "on")
    async with asyncio.timeout(WITHIN * 5):
        update = await stream.read()
    assert update.id == first.id and {k: i.value for k, i in update.items.items()} == {key: "on"}
    unsubscribe = configuration_pb2.UnsubscribeConfigurationRequest(store_name=STORE, id=first.id)
    assert (await over_grpc.front.dapr.UnsubscribeConfigurationAlpha1(unsubscribe)).ok
    async with asyncio.timeout(WITHIN * 5):
        assert await stream.read() is grpc.aio.EOF  # unsubscribing ends the stream
    again = await over_grpc.front.dapr.UnsubscribeConfiguration(unsubscribe)
    assert not again.ok and first.id in again.message


async def test_grpc_unknown_store_is_invalid_argument(over_grpc: GrpcConfig) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await over_grpc.front.dapr.GetConfiguration(configuration_pb2.GetConfigurationRequest(store_name="nostore"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "configuration store nostore not found"
