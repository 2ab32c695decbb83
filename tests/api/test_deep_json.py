"""Deeply nested JSON, as deep as daprd takes it (Go's 10,000 levels), through the state and publish APIs of
every store: what is saved comes back the same, what is published reaches the broker byte for byte."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from building_blocks import jsoncodec
from building_blocks.pubsub.base import PublishRequest
from building_blocks.pubsub.subscriptions import MAX_CEL_DEPTH
from tests.services import require_postgres, require_redis
from tests.sidecar import Sidecar, component_yaml, running_sidecar

STORES: dict[str, tuple[str, Callable[[Path], dict[str, str]]]] = {
    "in-memory": ("state.in-memory", lambda _: {}),
    "sqlite": ("state.sqlite", lambda tmp: {"connectionString": str(tmp / "state.db")}),
    "redis": ("state.redis", lambda _: {"redisHost": require_redis()}),
    "postgresql": (
        "state.postgresql",
        lambda _: {"connectionString": require_postgres(), "tableName": "deep_json_state"},
    ),
}
#: Past orjson's encoder (254), at and past its decoder (1,024), and far beyond.
DEPTHS = [255, 1023, 1025, 5000]


def nested(depth: int) -> bytes:
    """``depth`` levels of alternating objects and arrays, then an array of numbers and non-ASCII text."""
    opening = b"".join(b'{"n":' if level % 2 == 0 else b"[" for level in range(depth))
    closing = b"".join(b"}" if level % 2 == 0 else b"]" for level in reversed(range(depth)))
    return opening + '[1.5,-2,18446744073709551615,"é☃"]'.encode() + closing


def same_json(a: bytes, b: bytes) -> bool:
    """Semantic equality of two documents, however deep (``==`` on decoded values would recurse)."""
    return jsoncodec.dumps(jsoncodec.loads(a)) == jsoncodec.dumps(jsoncodec.loads(b))


@pytest.fixture(params=list(STORES))
async def sidecar(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sidecar]:
    component_type, metadata = STORES[request.param]
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", component_type, metadata(tmp_path)))
    (tmp_path / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.in-memory"))
    async with running_sidecar(tmp_path) as running:
        yield running


def fresh_key() -> str:
    return f"deep-{uuid.uuid4().hex}"


@pytest.mark.parametrize("depth", DEPTHS)
async def test_saved_deep_values_come_back_the_same(sidecar: Sidecar, depth: int) -> None:
    value = nested(depth)
    key = fresh_key()
    body = b'[{"key":"' + key.encode() + b'","value":' + value + b"}]"
    saved = await sidecar.client.post("/v1.0/state/statestore", content=body)
    assert saved.status_code == 204, saved.text[:300]
    got = await sidecar.client.get(f"/v1.0/state/statestore/{key}")
    assert got.status_code == 200 and same_json(got.content, value)
    bulk = await sidecar.client.post("/v1.0/state/statestore/bulk", json={"keys": [key]})
    assert bulk.status_code == 200
    (entry,) = jsoncodec.loads(bulk.content)
    assert not isinstance(entry["data"], str)  # embedded as JSON, not as text
    assert same_json(jsoncodec.dumps(entry["data"]), value)


@pytest.mark.parametrize("depth", [255, 1023, 5000])
async def test_transactions_upsert_deep_values(sidecar: Sidecar, depth: int) -> None:
    value = nested(depth)
    key = fresh_key()
    operation = b'{"operation":"upsert","request":{"key":"' + key.encode() + b'","value":' + value + b"}}"
    response = await sidecar.client.post(
        "/v1.0/state/statestore/transaction", content=b'{"operations":[' + operation + b"]}"
    )
    assert response.status_code == 204, response.text[:300]
    got = await sidecar.client.get(f"/v1.0/state/statestore/{key}")
    assert got.status_code == 200 and same_json(got.content, value)


async def test_deeper_than_dapr_takes_is_a_malformed_request(sidecar: Sidecar) -> None:
    depth = 3 * jsoncodec.MAX_DEPTH
    key = fresh_key()
    body = b'[{"key":"' + key.encode() + b'","value":' + b"[" * depth + b"]" * depth + b"}]"
    response = await sidecar.client.post("/v1.0/state/statestore", content=body)
    assert response.status_code == 400
    assert response.json() == {"errorCode": "ERR_MALFORMED_REQUEST", "message": "exceeded max depth"}
    assert (await sidecar.client.get(f"/v1.0/state/statestore/{key}")).status_code == 204


async def test_numbers_beyond_a_double_are_refused_as_dapr_does_and_big_integers_kept_as_numbers(
    sidecar: Sidecar,
) -> None:
    key = fresh_key()
    too_big = await sidecar.client.post("/v1.0/state/statestore", content=f'[{{"key":"{key}","value":1e400}}]')
    assert too_big.status_code == 400 and too_big.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    big = await sidecar.client.post(
        "/v1.0/state/statestore", content=f'[{{"key":"{key}","value":99999999999999999999}}]'
    )
    assert big.status_code == 204
    got = await sidecar.client.get(f"/v1.0/state/statestore/{key}")
    assert float(got.content) == float(99999999999999999999)  # a double, as daprd keeps it


def capture_publishes(sidecar: Sidecar) -> list[PublishRequest]:
    published: list[PublishRequest] = []
    pubsub = sidecar.runtime.pubsub.component("pubsub")

    async def publish(request: PublishRequest) -> None:
        published.append(request)

    pubsub.publish = publish  # type: ignore[method-assign]
    return published


@pytest.mark.parametrize("store", ["in-memory"])  # publishing touches no state store
@pytest.mark.parametrize("depth", DEPTHS)
async def test_published_json_reaches_the_broker_byte_for_byte(tmp_path: Path, store: str, depth: int) -> None:
    (tmp_path / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.in-memory"))
    async with running_sidecar(tmp_path) as sidecar:
        published = capture_publishes(sidecar)
        data = b' {"spaced" : ' + nested(depth) + b', "exact": 1.50, "huge": 1e400}\n'
        response = await sidecar.client.post(
            "/v1.0/publish/pubsub/t", content=data, headers={"content-type": "application/json"}
        )
        assert response.status_code == 204, response.text[:300]
        (request,) = published
        assert b'"data":' + data + b"}" in request.data  # not decoded and re-encoded: as the app wrote it
        assert jsoncodec.is_json(request.data) and b'"datacontenttype":"application/json"' in request.data

        event = b'{"id":"1","specversion":"1.0","data":' + nested(depth) + b"}"
        response = await sidecar.client.post(
            "/v1.0/publish/pubsub/t", content=event, headers={"content-type": "application/cloudevents+json"}
        )
        assert response.status_code == 204, response.text[:300]
        envelope = jsoncodec.loads(published[1].data)
        assert envelope["topic"] == "t" and same_json(jsoncodec.dumps(envelope["data"]), nested(depth))

        entries = b'[{"entryId":"1","contentType":"application/json","event":' + nested(depth) + b"}]"
        response = await sidecar.client.post("/v1.0-alpha1/publish/bulk/pubsub/t", content=entries)
        assert response.status_code == 204, response.text[:300]
        assert same_json(jsoncodec.dumps(jsoncodec.loads(published[2].data)["data"]), nested(depth))


@pytest.mark.parametrize("depth", [900, 1025, 5000, 9990])
async def test_a_deep_event_is_delivered_to_the_app_as_published_and_routed(tmp_path: Path, depth: int) -> None:
    """Past orjson's 1,024 levels the subscriber once failed to decode the event, and the broker redelivered it
    forever. Up to Dapr's 10,000 levels it now arrives byte for byte; a routing rule reading a part too deep
    for CEL (whose library crashed the process near 5,000 levels) does not match, and the others still route."""
    from tests.subscriber_app import SubscriberApp, serving

    rules = [{"match": "has(event.data.n)", "path": "/data"}, {"match": 'event.type != ""', "path": "/typed"}]
    subscription = {"pubsubname": "pubsub", "topic": "deep", "routes": {"rules": rules, "default": "/other"}}
    (tmp_path / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.in-memory"))
    async with (
        serving(SubscriberApp([subscription])) as app,
        running_sidecar(tmp_path, app_port=app.port) as sidecar,
    ):
        while not sidecar.runtime.pubsub.active:
            await asyncio.sleep(0.02)
        data = nested(depth)  # depth + 1 levels, + 1 for the envelope
        response = await sidecar.client.post(
            "/v1.0/publish/pubsub/deep", content=data, headers={"content-type": "application/json"}
        )
        assert response.status_code == 204
        path = "/data" if depth + 2 <= MAX_CEL_DEPTH else "/typed"
        (delivery,) = await app.wait_for(path, 1)
        assert not [d.path for d in app.deliveries if d.path != path]
    assert b'"data":' + data + b"}" in delivery.body
    assert jsoncodec.loads(delivery.body)["topic"] == "deep"
