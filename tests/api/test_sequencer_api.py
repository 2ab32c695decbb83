"""The sequencer API's wire contract: statuses, exact error bodies, string ids and backend key names."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from tests.services import require_redis
from tests.sidecar import Sidecar, component_yaml, running_sidecar

PATH = "/v1.0-alpha1/sequencer/sequencer"


def malformed(message: str) -> dict[str, str]:
    return {"errorCode": "ERR_MALFORMED_REQUEST", "message": message}


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    metadata = {"connectionString": str(tmp_path / "s.db")}
    (tmp_path / "sequencer.yaml").write_text(component_yaml("sequencer", "sequencer.sqlite", metadata))
    async with running_sidecar(tmp_path, app_id="myapp") as running:
        yield running


async def test_ids_and_segments_are_strings(sidecar: Sidecar) -> None:
    first = await sidecar.client.post(
        PATH, json={"key": "k", "options": {"increment": "STRONG"}, "metadata": {"a": "b"}}
    )
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    assert first.json() == {"nextId": "1"}
    segment = await sidecar.client.post(PATH, json={"key": "k", "size": "3"})
    assert segment.json() == {"from": "2", "to": "4"}
    numeric_enum = await sidecar.client.post(PATH, json={"key": "k", "options": {"increment": 1}})
    assert numeric_enum.json() == {"nextId": "5"}


async def test_sequencer_not_configured_is_500(tmp_path: Path) -> None:
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
    async with running_sidecar(tmp_path) as sidecar:
        response = await sidecar.client.post("/v1.0-alpha1/sequencer/nope", json={"key": ""})
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_SEQUENCER_STORE_NOT_CONFIGURED",
        "message": "sequencer store is not configured",
    }


async def test_unknown_sequencer_is_400_after_the_body_checks(sidecar: Sidecar) -> None:
    response = await sidecar.client.post("/v1.0-alpha1/sequencer/nope", json={"key": "k"})
    assert response.status_code == 400
    assert response.json() == {
        "errorCode": "ERR_SEQUENCER_STORE_NOT_FOUND",
        "message": "sequencer store nope not found",
    }
    empty_key = await sidecar.client.post("/v1.0-alpha1/sequencer/nope", json={"key": ""})
    assert empty_key.json() == malformed("Key is empty in sequencer store nope")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "Key is empty in sequencer store sequencer"),
        (b'{"key": "k", "size": -1}', "size must be a positive integer in sequencer store sequencer, got -1"),
        (b'{"key": "k", "size": "many"}', "size must be a positive integer in sequencer store sequencer, got 'many'"),
        (b'{"key": "k", "size": 1.5}', "size must be a positive integer in sequencer store sequencer, got 1.5"),
        (b'{"key": "k", "options": {"increment": 2}}', "options.increment is illegal: 2 (WEAK or STRONG)"),
        (b'{"key": "k", "options": {"increment": "weak"}}', "options.increment is illegal: 'weak' (WEAK or STRONG)"),
    ],
    ids=["empty-body", "negative-size", "text-size", "fraction-size", "unknown-enum-number", "lowercase-enum"],
)
async def test_bad_requests(sidecar: Sidecar, body: bytes, message: str) -> None:
    response = await sidecar.client.post(PATH, content=body)
    assert response.status_code == 400
    assert response.json() == malformed(message)


@pytest.mark.parametrize(
    "body",
    [b"{", b'"k"', b'{"key": 7}', b'{"key": "k", "options": "STRONG"}', b'{"key": "k", "metadata": {"a": 1}}'],
    ids=["truncated", "string", "number-key", "options-not-object", "metadata-not-strings"],
)
async def test_malformed_bodies(sidecar: Sidecar, body: bytes) -> None:
    response = await sidecar.client.post(PATH, content=body)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert response.json()["message"].startswith("failed deserializing HTTP body: ")


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"key": "k", "options": {"increment": "STRONG"}},
            "ERR_SEQUENCER_GET_NEXT_ID",
            "failed to get next id of k from sequencer store sequencer: sequencer: not initialised",
        ),
        (
            {"key": "k", "size": 2},
            "ERR_SEQUENCER_GET_SEGMENT",
            "failed to get a segment of k from sequencer store sequencer: sequencer: not initialised",
        ),
    ],
    ids=["next-id", "segment"],
)
async def test_backend_failures_are_500(sidecar: Sidecar, body: dict[str, object], code: str, message: str) -> None:
    await sidecar.runtime.sequencer.components["sequencer"].close()
    response = await sidecar.client.post(PATH, json=body)
    assert response.status_code == 500
    assert response.json() == {"errorCode": code, "message": message}


async def test_only_post_is_routed(sidecar: Sidecar) -> None:
    response = await sidecar.client.get(PATH)
    assert response.status_code == 404 and response.json()["errorCode"] == "ERR_DIRECT_INVOKE"


async def test_snowflake_ids_keep_every_digit(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(component_yaml("sequencer", "sequencer.snowflake", {"workerId": "1"}))
    async with running_sidecar(tmp_path) as sidecar:
        next_id = (await sidecar.client.post(PATH, json={"key": "k"})).json()["nextId"]
    assert isinstance(next_id, str) and int(next_id) > 2**53  # a JSON number would lose digits in JavaScript


@pytest.mark.parametrize(
    ("strategy", "stored"),
    [(None, "sequencer|||myapp||{k}"), ("name", "sequencer|||sequencer||{k}"), ("none", "sequencer|||{k}")],
    ids=["appid", "name", "none"],
)
async def test_redis_keys_are_layotto_sequencer_keys(tmp_path: Path, strategy: str | None, stored: str) -> None:
    host = require_redis()
    metadata = {"redisHost": host, "segmentSize": "25", **({"keyPrefix": strategy} if strategy else {})}
    (tmp_path / "s.yaml").write_text(component_yaml("sequencer", "sequencer.redis", metadata))
    k = f"key-{uuid.uuid4().hex}"  # fresh on every run: the sequence lives on in Redis
    async with running_sidecar(tmp_path, app_id="myapp") as sidecar:
        assert (await sidecar.client.post(PATH, json={"key": k})).json() == {"nextId": "1"}
        server = redis.Redis.from_url(f"redis://{host}")
        try:
            assert server.get(stored.format(k=k)) == b"25"  # one INCRBY reserved the WEAK segment
        finally:
            server.delete(stored.format(k=k))
            server.close()
