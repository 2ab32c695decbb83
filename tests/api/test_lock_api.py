"""The lock API's wire contract: Dapr's validation order, exact error bodies, and backend key names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from tests.services import require_redis
from tests.sidecar import Sidecar, component_yaml, running_sidecar

LOCK = "/v1.0-alpha1/lock/lockstore"
UNLOCK = "/v1.0-alpha1/unlock/lockstore"
RENEW = "/v1.0-alpha1/lock/lockstore/renew"


def malformed(message: str) -> dict[str, str]:
    return {"errorCode": "ERR_MALFORMED_REQUEST", "message": message}


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    (tmp_path / "lock.yaml").write_text(
        component_yaml("lockstore", "lock.sqlite", {"connectionString": str(tmp_path / "l.db")})
    )
    async with running_sidecar(tmp_path, app_id="myapp") as running:
        yield running


@pytest.fixture
async def no_locks(tmp_path: Path) -> AsyncIterator[Sidecar]:
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
    async with running_sidecar(tmp_path, app_id="myapp") as running:
        yield running


async def test_success_bodies(sidecar: Sidecar) -> None:
    body = {"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 60}
    taken = await sidecar.client.post(LOCK, json=body)
    assert taken.status_code == 200 and taken.headers["content-type"] == "application/json"
    assert taken.json() == {"success": True}
    assert (await sidecar.client.post(LOCK, json=body)).json() == {"success": False}
    assert (await sidecar.client.post(RENEW, json=body)).json() == {"status": 0}
    assert (await sidecar.client.post(UNLOCK, json={"resourceId": "r", "lockOwner": "x"})).json() == {"status": 2}
    assert (await sidecar.client.post(UNLOCK, json={"resourceId": "r", "lockOwner": "o"})).json() == {"status": 0}
    assert (await sidecar.client.post(UNLOCK, json={"resourceId": "r", "lockOwner": "o"})).json() == {"status": 1}


# -- validation order (L-H3) ----------------------------------------------------------------------------------


async def test_expiry_is_checked_before_anything_else(no_locks: Sidecar) -> None:
    response = await no_locks.client.post(
        "/v1.0-alpha1/lock/nope", json={"resourceId": "", "lockOwner": "", "expiryInSeconds": 0}
    )
    assert response.status_code == 400
    assert response.json() == malformed("ExpiryInSeconds is not positive in lock store nope")


@pytest.mark.parametrize("path", ["/v1.0-alpha1/lock/nope", "/v1.0-alpha1/unlock/nope", "/v1.0-alpha1/lock/nope/renew"])
async def test_no_lock_store_configured_is_500(no_locks: Sidecar, path: str) -> None:
    response = await no_locks.client.post(path, json={"resourceId": "", "lockOwner": "", "expiryInSeconds": 5})
    assert response.status_code == 500
    assert response.json() == {"errorCode": "ERR_LOCK_STORE_NOT_CONFIGURED", "message": "lock store is not configured"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"resourceId": "", "lockOwner": "o", "expiryInSeconds": 5}, "ResourceId is empty in lock store nope"),
        ({"resourceId": "r", "lockOwner": "", "expiryInSeconds": 5}, "LockOwner is empty in lock store nope"),
        ({"lockOwner": "", "expiryInSeconds": -1}, "ExpiryInSeconds is not positive in lock store nope"),
    ],
    ids=["resource", "owner", "expiry"],
)
async def test_empty_fields_are_checked_before_the_store_name(
    sidecar: Sidecar, body: dict[str, object], message: str
) -> None:
    response = await sidecar.client.post("/v1.0-alpha1/lock/nope", json=body)
    assert response.status_code == 400
    assert response.json() == malformed(message)


@pytest.mark.parametrize("path", ["/v1.0-alpha1/lock/nope", "/v1.0-alpha1/unlock/nope", "/v1.0-alpha1/lock/nope/renew"])
async def test_unknown_store_is_400(sidecar: Sidecar, path: str) -> None:
    response = await sidecar.client.post(path, json={"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 5})
    assert response.status_code == 400
    assert response.json() == {"errorCode": "ERR_LOCK_STORE_NOT_FOUND", "message": "lock store nope not found"}


async def test_unlock_does_not_need_an_expiry(sidecar: Sidecar) -> None:
    empty = await sidecar.client.post(UNLOCK, content=b"")
    assert empty.status_code == 400
    assert empty.json() == malformed("ResourceId is empty in lock store lockstore")
    owner = await sidecar.client.post(UNLOCK, json={"resourceId": "r"})
    assert owner.json() == malformed("LockOwner is empty in lock store lockstore")


# -- bodies ------------------------------------------------------------------------------------------------------


async def test_empty_body_is_an_empty_request(sidecar: Sidecar) -> None:
    response = await sidecar.client.post(LOCK, content=b"")
    assert response.status_code == 400
    assert response.json() == malformed("ExpiryInSeconds is not positive in lock store lockstore")


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[1]",
        b'{"resourceId": 5, "lockOwner": "o", "expiryInSeconds": 5}',
        b'{"resourceId": "r", "lockOwner": "o", "expiryInSeconds": "soon"}',
        b'{"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 1.5}',
    ],
    ids=["truncated", "array", "number-id", "text-expiry", "fraction-expiry"],
)
async def test_malformed_bodies_are_400(sidecar: Sidecar, body: bytes) -> None:
    response = await sidecar.client.post(LOCK, content=body)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert response.json()["message"].startswith("failed deserializing HTTP body: ")


async def test_protobuf_json_spellings_are_accepted(sidecar: Sidecar) -> None:
    snake = await sidecar.client.post(
        LOCK, json={"resource_id": "snake", "lock_owner": "o", "expiry_in_seconds": "30", "unknown": True}
    )
    assert snake.json() == {"success": True}
    released = await sidecar.client.post(UNLOCK, json={"resource_id": "snake", "lockOwner": "o"})
    assert released.json() == {"status": 0}


# -- failures, methods ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        (LOCK, "ERR_TRY_LOCK", "failed to try acquiring lock: lockstore: not initialised"),
        (UNLOCK, "ERR_UNLOCK", "failed to release lock: lockstore: not initialised"),
        (RENEW, "ERR_RENEW_LOCK", "failed to renew lock: lockstore: not initialised"),
    ],
)
async def test_backend_failures_are_500_error_bodies(sidecar: Sidecar, path: str, code: str, message: str) -> None:
    await sidecar.runtime.lock.components["lockstore"].close()
    response = await sidecar.client.post(path, json={"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 5})
    assert response.status_code == 500
    assert response.json() == {"errorCode": code, "message": message}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_only_post_is_routed(sidecar: Sidecar, method: str) -> None:
    response = await sidecar.client.request(method, LOCK)
    assert response.status_code == 404
    assert response.json()["errorCode"] == "ERR_DIRECT_INVOKE"


async def test_lock_stores_are_listed_by_the_metadata_api(sidecar: Sidecar) -> None:
    components = (await sidecar.client.get("/v1.0/metadata")).json()["components"]
    assert {"name": "lockstore", "type": "lock.sqlite", "version": "v1"} in components


# -- L-H4: backend keys ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "stored"),
    [(None, "lock||myapp||{r}"), ("name", "lock||lockstore||{r}"), ("none", "lock||{r}"), ("team", "lock||team||{r}")],
    ids=["appid", "name", "none", "literal"],
)
async def test_redis_keys_are_dapr_lock_keys(tmp_path: Path, strategy: str | None, stored: str) -> None:
    host = require_redis()
    metadata = {"redisHost": host, **({"keyPrefix": strategy} if strategy else {})}
    (tmp_path / "lock.yaml").write_text(component_yaml("lockstore", "lock.redis", metadata))
    resource = f"res-{tmp_path.name}"
    async with running_sidecar(tmp_path, app_id="myapp") as sidecar:
        body = {"resourceId": resource, "lockOwner": "owner-1", "expiryInSeconds": 30}
        assert (await sidecar.client.post(LOCK, json=body)).json() == {"success": True}
        server = redis.Redis.from_url(f"redis://{host}")
        try:
            key = stored.format(r=resource)
            assert server.get(key) == b"owner-1"
            assert 0 < server.pttl(key) <= 30_000
            assert (await sidecar.client.post(UNLOCK, json=body)).json() == {"status": 0}
            assert server.exists(key) == 0
        finally:
            server.close()
