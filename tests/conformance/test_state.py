"""The state conformance suite: every state store, through the HTTP API (and, for the cases that are not about
the HTTP wire, through the gRPC API too), held to the same behaviour.

Each store declares the features it claims (like Dapr's ``tests.yml``); tests of a claimed feature run, and
for an unclaimed one the suite checks that it is really absent. A new store joins by adding one entry to
``STORES``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import state_pb2

from tests.grpc.fronts import FRONTS, GrpcFront, grpc_front
from tests.services import require_postgres, require_redis
from tests.sidecar import Sidecar, component_yaml, running_sidecar

ETAG, TRANSACTIONAL, TTL, QUERY = "ETAG", "TRANSACTIONAL", "TTL", "QUERY_API"


@dataclass(frozen=True)
class StoreCase:
    component_type: str
    features: frozenset[str]
    bad_etag: str
    metadata: Callable[[Path], dict[str, str]]
    persistent: bool = True


STORES = {
    "in-memory": StoreCase(
        "state.in-memory", frozenset({ETAG, TRANSACTIONAL, TTL, QUERY}), "bad-etag", lambda _: {}, persistent=False
    ),
    "sqlite": StoreCase(
        "state.sqlite",
        frozenset({ETAG, TRANSACTIONAL, TTL, QUERY}),
        "bad-etag",
        lambda tmp: {"connectionString": str(tmp / "state.db")},
    ),
    "redis": StoreCase(
        "state.redis", frozenset({ETAG, TRANSACTIONAL, TTL}), "9999999", lambda _: {"redisHost": require_redis()}
    ),
    "postgresql": StoreCase(
        "state.postgresql",
        frozenset({ETAG, TRANSACTIONAL, TTL, QUERY}),
        "1",
        lambda _: {"connectionString": require_postgres(), "tableName": "conformance_state"},
    ),
}
COMPONENT_TYPES = frozenset(case.component_type for case in STORES.values())  # checked by test_registry_coverage


@dataclass
class Store:
    name: str
    case: StoreCase
    sidecar: Sidecar
    resources: Path

    @property
    def client(self) -> httpx.AsyncClient:
        return self.sidecar.client

    def claims(self, feature: str) -> bool:
        return feature in self.case.features

    async def save(self, *items: dict[str, Any], query: str = "") -> httpx.Response:
        return await self.client.post(f"/v1.0/state/statestore{query}", content=orjson.dumps(list(items)))

    async def get(self, key: str) -> httpx.Response:
        return await self.client.get(f"/v1.0/state/statestore/{key}")


@pytest.fixture(params=list(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    case = STORES[request.param]
    (tmp_path / "statestore.yaml").write_text(
        component_yaml("statestore", case.component_type, case.metadata(tmp_path))
    )
    async with running_sidecar(tmp_path) as sidecar:
        yield Store(request.param, case, sidecar, tmp_path)


def key() -> str:
    return uuid.uuid4().hex


# -- S-2 / S-H3 / S-H4: round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [123, True, False, None, "hello world", "", '{"a":"b"}', {"message": "test"}, [1, "two", {"3": 4}], 1.5, "é<>&"],
    ids=[
        "int",
        "true",
        "false",
        "null",
        "string",
        "empty-string",
        "string-with-json",
        "struct",
        "list",
        "float",
        "utf8",
    ],
)
async def test_value_round_trips_exactly(store: Store, value: object) -> None:
    k = key()
    response = await store.save({"key": k, "value": value})
    assert response.status_code == 204 and response.content == b""
    got = await store.get(k)
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert orjson.loads(got.content) == value
    if store.claims(ETAG):
        assert got.headers["etag"]


async def test_missing_key_is_204_without_etag(store: Store) -> None:
    got = await store.get(key())
    assert got.status_code == 204 and got.content == b"" and "etag" not in got.headers


async def test_delete_then_get_is_empty_and_deleting_missing_key_succeeds(store: Store) -> None:
    k = key()
    await store.save({"key": k, "value": "to be deleted"})
    assert (await store.client.delete(f"/v1.0/state/statestore/{k}")).status_code == 204
    assert (await store.get(k)).status_code == 204
    assert (await store.client.delete(f"/v1.0/state/statestore/{k}")).status_code == 204


async def test_several_items_and_duplicate_keys_in_one_save(store: Store) -> None:
    a, b = key(), key()
    response = await store.save({"key": a, "value": 1}, {"key": b, "value": 2}, {"key": a, "value": 3})
    assert response.status_code == 204
    assert orjson.loads((await store.get(b)).content) == 2
    assert orjson.loads((await store.get(a)).content) in (1, 3)  # Dapr applies them concurrently


# -- S-5 / S-H9: bulk get --------------------------------------------------------------------------------------


async def test_bulk_get_keeps_request_order_and_reports_missing_keys(store: Store) -> None:
    a, b, missing = key(), key(), key()
    await store.save({"key": a, "value": {"n": 1}}, {"key": b, "value": "two"})
    response = await store.client.post(
        "/v1.0/state/statestore/bulk", content=orjson.dumps({"keys": [b, missing, a], "parallelism": 10})
    )
    assert response.status_code == 200
    items = response.json()
    assert [item["key"] for item in items] == [b, missing, a]
    assert items[0]["data"] == "two" and items[2]["data"] == {"n": 1}
    assert items[1] == {"key": missing}
    if store.claims(ETAG):
        assert items[0]["etag"] == (await store.get(b)).headers["etag"]
    empty = await store.client.post("/v1.0/state/statestore/bulk", content=b'{"keys": []}')
    assert empty.status_code == 200 and empty.json() == []


# -- S-7 / S-H6: etags -------------------------------------------------------------------------------------------


async def test_etags(store: Store) -> None:
    if not store.claims(ETAG):
        pytest.skip("store does not claim ETAG")
    k0, k1 = key(), key()
    await store.save({"key": k0, "value": "first"}, {"key": k1, "value": "first"})
    etag0 = (await store.get(k0)).headers["etag"]
    etag1 = (await store.get(k1)).headers["etag"]

    bad = await store.save({"key": k0, "value": "second", "etag": store.case.bad_etag})
    assert bad.status_code == 409
    assert bad.json()["errorCode"] == "ERR_STATE_SAVE"
    assert bad.json()["message"].startswith(
        "failed saving state in state store statestore: possible etag mismatch. error from state store: "
    )
    assert (await store.get(k0)).headers["etag"] == etag0

    good = await store.save({"key": k0, "value": "second", "etag": etag0})
    assert good.status_code == 204
    got = await store.get(k0)
    assert got.json() == "second" and got.headers["etag"] != etag0
    etag0 = got.headers["etag"]

    # Several items are not atomic: the good one is applied, the bad one reported (409).
    mixed = await store.save(
        {"key": k0, "value": "third", "etag": store.case.bad_etag}, {"key": k1, "value": "third", "etag": etag1}
    )
    assert mixed.status_code == 409
    assert (await store.get(k0)).json() == "second"
    assert (await store.get(k1)).json() == "third"

    refused = await store.client.delete(f"/v1.0/state/statestore/{k0}", headers={"If-Match": store.case.bad_etag})
    assert refused.status_code == 409
    assert refused.json()["errorCode"] == "ERR_STATE_DELETE"
    assert refused.json()["message"].startswith(f"failed deleting state with key {k0}: possible etag mismatch")
    assert (await store.get(k0)).json() == "second"
    deleted = await store.client.delete(f"/v1.0/state/statestore/{k0}", headers={"If-Match": etag0})
    assert deleted.status_code == 204
    assert (await store.get(k0)).status_code == 204

    # An etag for a key that does not exist can never match.
    assert (await store.save({"key": key(), "value": 1, "etag": store.case.bad_etag})).status_code == 409
    missing_delete = await store.client.delete(
        f"/v1.0/state/statestore/{key()}", headers={"If-Match": store.case.bad_etag}
    )
    assert missing_delete.status_code == 409


async def test_an_empty_etag_means_no_etag(store: Store) -> None:
    k = key()
    await store.save({"key": k, "value": 1})
    assert (await store.save({"key": k, "value": 2, "etag": ""})).status_code == 204
    assert (await store.client.delete(f"/v1.0/state/statestore/{k}", headers={"If-Match": ""})).status_code == 204


# -- S-8: first-write ------------------------------------------------------------------------------------------


async def test_first_write(store: Store) -> None:
    if not store.claims(ETAG):
        pytest.skip("store does not claim ETAG")
    k = key()
    first = {"concurrency": "first-write"}
    assert (await store.save({"key": k, "value": "v1", "options": first})).status_code == 204
    again = await store.save({"key": k, "value": "v2", "options": first})
    assert again.status_code == 409
    assert (await store.save({"key": k, "value": "v2", "etag": "", "options": first})).status_code == 409
    assert (await store.get(k)).json() == "v1"

    etag = (await store.get(k)).headers["etag"]
    assert (await store.save({"key": k, "value": "v3", "etag": etag, "options": first})).status_code == 204
    assert (await store.get(k)).headers["etag"] != etag
    assert (await store.save({"key": k, "value": "v4", "etag": etag, "options": first})).status_code == 409
    # last-write without an etag always overwrites
    assert (await store.save({"key": k, "value": "v5", "options": {"concurrency": "last-write"}})).status_code == 204
    assert (await store.get(k)).json() == "v5"


async def test_unknown_concurrency_is_a_400_with_daprs_store_error(store: Store) -> None:
    response = await store.save({"key": key(), "value": 1, "options": {"concurrency": "someday"}})
    assert response.status_code == 400  # daprd answers 500: its store refuses the option
    assert response.json() == {
        "errorCode": "ERR_STATE_SAVE",
        "message": "failed saving state in state store statestore: unrecognized concurrency model 'someday'",
    }


# -- S-9 / S-H8: TTL -------------------------------------------------------------------------------------------


def _expire_time(response: httpx.Response) -> float | None:
    header = response.headers.get("metadata.ttlexpiretime")
    if header is None:
        return None
    return datetime.strptime(header, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


async def _gone_within(store: Store, k: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (await store.get(k)).status_code == 204:
            return True
        await asyncio.sleep(0.2)
    return False


async def test_ttl(store: Store) -> None:
    if not store.claims(TTL):
        pytest.skip("store does not claim TTL")
    k, keep = key(), key()
    saved_at = time.time()
    assert (await store.save({"key": k, "value": "v", "metadata": {"ttlInSeconds": "2"}})).status_code == 204
    got = await store.get(k)
    assert got.status_code == 200
    expires = _expire_time(got)
    assert expires is not None and abs(expires - (saved_at + 2)) <= 1.5

    bulk = (await store.client.post("/v1.0/state/statestore/bulk", content=orjson.dumps({"keys": [k]}))).json()
    assert "ttlExpireTime" in bulk[0]["metadata"]

    # Without TTL: no header; -1 and plain overwrites remove an earlier TTL.
    await store.save({"key": keep, "value": 1, "metadata": {"ttlInSeconds": "1"}})
    await store.save({"key": keep, "value": 2, "metadata": {"ttlInSeconds": "-1"}})
    assert _expire_time(await store.get(keep)) is None
    assert await _gone_within(store, k, 3.5)
    assert (await store.get(keep)).json() == 2

    cleared = key()
    await store.save({"key": cleared, "value": 1}, query="?metadata.ttlInSeconds=1")
    assert _expire_time(await store.get(cleared)) is not None
    await store.save({"key": cleared, "value": 2})
    assert _expire_time(await store.get(cleared)) is None


async def test_invalid_ttl_is_a_400_with_daprs_store_error(store: Store) -> None:
    response = await store.save({"key": key(), "value": 1, "metadata": {"ttlInSeconds": "foo"}})
    assert response.status_code == 400  # daprd answers 500: its store refuses the option
    assert response.json()["errorCode"] == "ERR_STATE_SAVE"


# -- S-6 / S-H10: transactions ---------------------------------------------------------------------------------


async def _transact(store: Store, *operations: tuple[str, dict[str, object]]) -> httpx.Response:
    body = {"operations": [{"operation": op, "request": request} for op, request in operations]}
    return await store.client.post("/v1.0/state/statestore/transaction", content=orjson.dumps(body))


async def test_transactions(store: Store) -> None:
    if not store.claims(TRANSACTIONAL):
        response = await _transact(store, ("upsert", {"key": key(), "value": 1}))
        assert response.status_code == 500
        assert response.json()["errorCode"] == "ERR_STATE_STORE_NOT_SUPPORTED"
        return
    k1, k2, k3 = key(), key(), key()
    await store.save({"key": k1, "value": "value1"})
    response = await _transact(
        store,
        ("delete", {"key": k1}),
        ("upsert", {"key": k2, "value": "value2"}),
        ("delete", {"key": k2}),
        ("upsert", {"key": k3, "value": "value3"}),
    )
    assert response.status_code == 204
    assert (await store.get(k1)).status_code == 204
    assert (await store.get(k2)).status_code == 204
    assert (await store.get(k3)).json() == "value3"

    assert (
        await _transact(store, ("upsert", {"key": k1, "value": "A"}), ("upsert", {"key": k1, "value": "B"}))
    ).status_code == 204
    assert (await store.get(k1)).json() == "B"
    assert (await _transact(store, ("delete", {"key": key()}))).status_code == 204
    empty = await store.client.post("/v1.0/state/statestore/transaction", content=b'{"operations": []}')
    assert empty.status_code == 204


async def test_transaction_is_all_or_nothing(store: Store) -> None:
    if not (store.claims(TRANSACTIONAL) and store.claims(ETAG)):
        pytest.skip("store does not claim TRANSACTIONAL and ETAG")
    k1, k2, fresh = key(), key(), key()
    await store.save({"key": k1, "value": "one"}, {"key": k2, "value": "two"})
    etag1 = (await store.get(k1)).headers["etag"]
    response = await _transact(
        store,
        ("upsert", {"key": k1, "value": "changed", "etag": etag1}),
        ("delete", {"key": k2}),
        ("upsert", {"key": fresh, "value": "new"}),
        ("upsert", {"key": k2, "value": "x", "etag": store.case.bad_etag}),
    )
    assert response.status_code == 500
    assert response.json()["errorCode"] == "ERR_STATE_TRANSACTION"
    assert response.json()["message"].startswith("error while executing state transaction: ")
    assert (await store.get(k1)).json() == "one"
    assert (await store.get(k1)).headers["etag"] == etag1
    assert (await store.get(k2)).json() == "two"
    assert (await store.get(fresh)).status_code == 204

    first_write = await _transact(
        store,
        ("upsert", {"key": fresh, "value": 1}),
        ("upsert", {"key": k1, "value": 2, "options": {"concurrency": "first-write"}}),
    )
    assert first_write.status_code == 500
    assert (await store.get(fresh)).status_code == 204


# -- S-10 / S-H11: query ---------------------------------------------------------------------------------------

PEOPLE = [
    {"person": {"org": "Dev Ops", "id": 1036}, "city": "Seattle", "state": "WA"},
    {"person": {"org": "Hardware", "id": 1028}, "city": "Portland", "state": "OR"},
    {"person": {"org": "Finance", "id": 1071}, "city": "Sacramento", "state": "CA"},
    {"person": {"org": "Dev Ops", "id": 1042}, "city": "Spokane", "state": "WA"},
    {"person": {"org": "Hardware", "id": 1007}, "city": "Los Angeles", "state": "CA"},
    {"person": {"org": "Finance", "id": 1094}, "city": "Eugene", "state": "OR"},
    {"person": {"org": "Dev Ops", "id": 1015}, "city": "San Francisco", "state": "CA"},
    {"person": {"org": "Hardware", "id": 1077}, "city": "Redmond", "state": "WA"},
    {"person": {"org": "Finance", "id": 1002}, "city": "San Diego", "state": "CA"},
    {"person": {"org": "Dev Ops", "id": 1054}, "city": "Boise", "state": "ID"},
]


async def _query(store: Store, query: dict[str, Any]) -> httpx.Response:
    return await store.client.post("/v1.0-alpha1/state/statestore/query", content=orjson.dumps(query))


async def test_query(store: Store) -> None:
    if not store.claims(QUERY):
        response = await _query(store, {"filter": {"EQ": {"state": "CA"}}})
        assert response.status_code == 500
        assert response.json()["errorCode"] == "ERR_STATE_STORE_NOT_SUPPORTED"
        assert response.json()["message"] == "state store does not support querying"
        return
    await store.save(*({"key": str(i), "value": person} for i, person in enumerate(PEOPLE, 1)))

    dapr_example = {
        "filter": {
            "OR": [
                {"EQ": {"person.org": "Dev Ops"}},
                {"AND": [{"EQ": {"person.org": "Finance"}}, {"IN": {"state": ["CA", "WA"]}}]},
            ]
        },
        "sort": [{"key": "state", "order": "DESC"}, {"key": "person.id"}],
    }
    response = await _query(store, dapr_example)
    assert response.status_code == 200
    body = response.json()
    assert [r["key"] for r in body["results"]] == ["1", "4", "10", "9", "7", "3"]
    assert body["results"][0]["data"] == PEOPLE[0]
    if store.claims(ETAG):
        assert body["results"][0]["etag"] == (await store.get("1")).headers["etag"]

    first = (await _query(store, {**dapr_example, "page": {"limit": 3}})).json()
    assert [r["key"] for r in first["results"]] == ["1", "4", "10"] and first["token"]
    second = (await _query(store, {**dapr_example, "page": {"limit": 3, "token": first["token"]}})).json()
    assert [r["key"] for r in second["results"]] == ["9", "7", "3"]
    assert "token" not in second

    ranges = {"filter": {"AND": [{"GTE": {"person.id": 1028}}, {"LT": {"person.id": 1054}}, {"NEQ": {"state": "OR"}}]}}
    assert sorted(r["key"] for r in (await _query(store, ranges)).json()["results"]) == ["1", "4"]
    nothing = await _query(store, {"filter": {"EQ": {"state": "TX"}}})
    assert nothing.status_code == 204

    bad = await _query(store, {"filter": {"LIKE": {"state": "C%"}}})  # daprd: 500; the client's mistake: 400
    assert bad.status_code == 400
    assert bad.json()["errorCode"] == "ERR_STATE_QUERY"
    assert bad.json()["message"].startswith("state store statestore query failed: ")


# -- capabilities and key prefixes -----------------------------------------------------------------------------


async def test_metadata_reports_exactly_the_claimed_features(store: Store) -> None:
    components = (await store.client.get("/v1.0/metadata")).json()["components"]
    (component,) = [c for c in components if c["name"] == "statestore"]
    claimed = set(store.case.features)
    if {ETAG, TRANSACTIONAL} <= claimed:
        claimed.add("ACTOR")
    assert set(component.get("capabilities", [])) == claimed


async def test_data_survives_a_restart_and_is_scoped_by_app_id(store: Store) -> None:
    if not store.case.persistent:
        pytest.skip("store is not persistent")
    k = key()
    await store.save({"key": k, "value": {"kept": True}})
    app_id = store.sidecar.app_id
    async with running_sidecar(store.resources, app_id=app_id) as again:
        assert (await again.client.get(f"/v1.0/state/statestore/{k}")).json() == {"kept": True}
    async with running_sidecar(store.resources) as other_app:
        assert (await other_app.client.get(f"/v1.0/state/statestore/{k}")).status_code == 204


# -- both fronts: the block's behaviour through HTTP and through gRPC --------------------------------------------
#
# The cases above check the HTTP wire itself (statuses, headers, bodies); these run once per front, through a
# client that speaks either, so that what the state block does is proven for HTTP and for gRPC alike.


class Refused(Exception):
    """A call the sidecar refused, as one kind for both fronts: ``mismatch`` (HTTP 409 / gRPC ABORTED),
    ``invalid`` (400 / INVALID_ARGUMENT), ``failed`` (500 / INTERNAL), ``unsupported`` (UNIMPLEMENTED)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


_HTTP_KINDS = {409: "mismatch", 400: "invalid", 500: "failed"}
_GRPC_KINDS = {
    "ABORTED": "mismatch",
    "INVALID_ARGUMENT": "invalid",
    "INTERNAL": "failed",
    "UNIMPLEMENTED": "unsupported",
}


@dataclass
class FrontState:
    """The state API of a sidecar through one front; values are JSON text (what HTTP stores)."""

    store: Store
    grpc: GrpcFront | None

    async def _http(self, response: httpx.Response, *ok: int) -> httpx.Response:
        if response.status_code not in ok:
            raise Refused(_HTTP_KINDS.get(response.status_code, str(response.status_code)), response.json()["message"])
        return response

    async def _grpc(self, call: Any) -> Any:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise Refused(_GRPC_KINDS.get(exc.code().name, exc.code().name), exc.details() or "") from None

    async def save(self, *items: tuple[str, bytes, str | None]) -> None:
        if self.grpc is None:
            body = [
                {"key": k, "value": orjson.Fragment(v), **({"etag": e} if e is not None else {})} for k, v, e in items
            ]
            await self._http(await self.store.client.post("/v1.0/state/statestore", content=orjson.dumps(body)), 204)
            return
        states = []
        for k, v, e in items:
            item = common_pb2.StateItem(key=k, value=v)
            if e is not None:
                item.etag.value = e
            states.append(item)
        await self._grpc(self.grpc.dapr.SaveState(state_pb2.SaveStateRequest(store_name="statestore", states=states)))

    async def get(self, k: str) -> tuple[bytes, str]:
        """Value and etag; a missing key is ``(b"", "")`` on both fronts."""
        if self.grpc is None:
            response = await self._http(await self.store.get(k), 200, 204)
            return response.content, response.headers.get("etag", "")
        got = await self._grpc(self.grpc.dapr.GetState(state_pb2.GetStateRequest(store_name="statestore", key=k)))
        return got.data, got.etag

    async def delete(self, k: str, etag: str | None = None) -> None:
        if self.grpc is None:
            headers = {"If-Match": etag} if etag is not None else {}
            await self._http(await self.store.client.delete(f"/v1.0/state/statestore/{k}", headers=headers), 204)
            return
        request = state_pb2.DeleteStateRequest(store_name="statestore", key=k)
        if etag is not None:
            request.etag.value = etag
        await self._grpc(self.grpc.dapr.DeleteState(request))

    async def bulk_get(self, keys: list[str]) -> list[tuple[str, Any]]:
        """Keys and decoded values (None when missing): a store may re-serialise JSON (PostgreSQL's jsonb)."""
        if self.grpc is None:
            response = await self.store.client.post("/v1.0/state/statestore/bulk", content=orjson.dumps({"keys": keys}))
            items = (await self._http(response, 200)).json()
            return [(i["key"], i.get("data")) for i in items]
        request = state_pb2.GetBulkStateRequest(store_name="statestore", keys=keys)
        answer = await self._grpc(self.grpc.dapr.GetBulkState(request))
        return [(item.key, orjson.loads(item.data) if item.data else None) for item in answer.items]

    async def transact(self, *operations: tuple[str, str, bytes]) -> None:
        if self.grpc is None:
            ops = [
                {"operation": op, "request": {"key": k, **({"value": orjson.Fragment(v)} if op == "upsert" else {})}}
                for op, k, v in operations
            ]
            response = await self.store.client.post(
                "/v1.0/state/statestore/transaction", content=orjson.dumps({"operations": ops})
            )
            await self._http(response, 204)
            return
        request = state_pb2.ExecuteStateTransactionRequest(
            storeName="statestore",
            operations=[
                state_pb2.TransactionalStateOperation(operationType=op, request=common_pb2.StateItem(key=k, value=v))
                for op, k, v in operations
            ],
        )
        await self._grpc(self.grpc.dapr.ExecuteStateTransaction(request))


@pytest.fixture(params=FRONTS)
async def front(request: pytest.FixtureRequest, store: Store) -> AsyncIterator[FrontState]:
    if request.param == "http":
        yield FrontState(store, None)
        return
    async with running_sidecar(store.resources, grpc=True) as sidecar, grpc_front(sidecar) as channel:
        yield FrontState(Store(store.name, store.case, sidecar, store.resources), channel)


async def test_both_fronts_round_trip_and_missing_keys(front: FrontState) -> None:
    k = key()
    assert await front.get(k) == (b"", "")
    await front.save((k, b'{"n":1}', None))
    value, etag = await front.get(k)
    assert orjson.loads(value) == {"n": 1}
    assert bool(etag) == front.store.claims(ETAG)
    await front.delete(k)
    assert await front.get(k) == (b"", "")
    await front.delete(k)  # deleting a missing key succeeds


async def test_both_fronts_etags(front: FrontState) -> None:
    if not front.store.claims(ETAG):
        pytest.skip("store does not claim ETAG")
    k = key()
    await front.save((k, b'"first"', None))
    _, etag = await front.get(k)
    with pytest.raises(Refused) as stale:
        await front.save((k, b'"second"', front.store.case.bad_etag))
    assert stale.value.kind == "mismatch" and "possible etag mismatch" in stale.value.message
    await front.save((k, b'"second"', etag))
    value, current = await front.get(k)
    assert orjson.loads(value) == "second" and current != etag
    with pytest.raises(Refused) as refused:
        await front.delete(k, etag)
    assert refused.value.kind == "mismatch"
    await front.delete(k, current)
    assert await front.get(k) == (b"", "")


async def test_both_fronts_bulk_get_keeps_order(front: FrontState) -> None:
    a, b, missing = key(), key(), key()
    await front.save((a, b'{"n":1}', None), (b, b'"two"', None))
    assert await front.bulk_get([b, missing, a]) == [(b, "two"), (missing, None), (a, {"n": 1})]


async def test_both_fronts_transactions(front: FrontState) -> None:
    a, b = key(), key()
    await front.save((a, b'"old"', None))
    if not front.store.claims(TRANSACTIONAL):
        with pytest.raises(Refused):
            await front.transact(("upsert", b, b'"new"'))
        return
    await front.transact(("upsert", b, b'"new"'), ("delete", a, b""))
    assert await front.bulk_get([a, b]) == [(a, None), (b, "new")]
    with pytest.raises(Refused) as unknown:
        await front.transact(("merge", a, b'"x"'))
    assert unknown.value.kind in ("invalid", "unsupported")


async def test_both_fronts_refuse_an_illegal_key(front: FrontState) -> None:
    with pytest.raises(Refused) as illegal:
        await front.save(("a||b", b"1", None))
    assert illegal.value.kind == "invalid" and "can't contain '||'" in illegal.value.message
