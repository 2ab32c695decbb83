"""The runtime's own wire contract: routing fallback, health, metadata, actuator, secrets, tokens, limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.sidecar import Sidecar, component_yaml, running_sidecar

NO_APP_ID = {
    "errorCode": "ERR_DIRECT_INVOKE",
    "message": "failed getting app id either from the URL path or the header dapr-app-id",
}


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"db": {"password": "s3cret", "user": "admin"}, "token": "abc"}))
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
    (tmp_path / "secrets.yaml").write_text(
        component_yaml("localsecrets", "secretstores.local.file", {"secretsFile": str(secrets)})
    )
    async with running_sidecar(tmp_path, app_id="myapp") as running:
        yield running


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1.0/state/statestore"),  # no key
        ("POST", "/v1.0/publish/mypubsub"),  # no topic
        ("PATCH", "/v1.0/state/statestore"),  # wrong method
        ("GET", "/no/such/route"),
        ("POST", "/v1.0/metadata"),
    ],
)
async def test_unknown_routes_and_methods_fall_to_invocation(sidecar: Sidecar, method: str, path: str) -> None:
    response = await sidecar.client.request(method, path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == NO_APP_ID


async def test_paths_are_cleaned_like_dapr(sidecar: Sidecar) -> None:
    await sidecar.client.post("http://sidecar//v1.0//state/statestore/", content=b'[{"key":"k","value":7}]')
    assert (await sidecar.client.get("/v1.0/state/statestore/k/")).json() == 7


async def test_healthz_and_metadata(sidecar: Sidecar) -> None:
    assert (await sidecar.client.get("/v1.0/healthz")).status_code == 204
    assert (await sidecar.client.get("/v1.0/healthz/outbound")).status_code == 204
    mismatch = await sidecar.client.get("/v1.0/healthz?appid=other")
    assert mismatch.status_code == 500
    assert mismatch.json() == {"errorCode": "ERR_HEALTH_APPID_NOT_MATCH", "message": "dapr app-id does not match"}
    assert (await sidecar.client.put("/v1.0/metadata/newkey", content=b"newvalue")).status_code == 204
    metadata = (await sidecar.client.get("/v1.0/metadata")).json()
    assert metadata["id"] == "myapp"
    assert metadata["extended"]["newkey"] == "newvalue"
    assert metadata["extended"]["daprRuntimeVersion"] == metadata["runtimeVersion"]
    components = {c["name"]: c for c in metadata["components"]}
    assert components["statestore"] == {
        "name": "statestore",
        "type": "state.in-memory",
        "version": "v1",
        "capabilities": ["ETAG", "QUERY_API", "TRANSACTIONAL", "TTL", "ACTOR"],
    }
    assert components["localsecrets"] == {"name": "localsecrets", "type": "secretstores.local.file", "version": "v1"}
    assert metadata["subscriptions"] == [] and metadata["httpEndpoints"] == []


async def test_actuator(sidecar: Sidecar) -> None:
    liveness = await sidecar.client.get("/actuator/health/liveness")
    assert liveness.status_code == 200 and liveness.json()["status"] == "UP"
    readiness = await sidecar.client.get("/actuator/health/readiness")
    assert readiness.status_code == 200
    assert readiness.json() == {
        "status": "UP",
        "components": {
            "runtime_startup": {"status": "UP", "details": {"reason": ""}},
            "statestore": {"status": "UP"},
            "localsecrets": {"status": "UP"},
        },
    }
    info = (await sidecar.client.get("/actuator/info")).json()
    assert info["app"]["name"] == "Layotto" and info["app"]["version"]
    unknown = await sidecar.client.get("/actuator/health/other")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "health type invalid"})


async def test_readiness_is_503_when_a_backend_is_down(tmp_path: Path) -> None:
    (tmp_path / "state.yaml").write_text(
        component_yaml("statestore", "state.sqlite", {"connectionString": str(tmp_path / "s.db")})
    )
    async with running_sidecar(tmp_path) as sidecar:
        await sidecar.runtime.components[0].component.close()  # the backend goes away
        response = await sidecar.client.get("/actuator/health/readiness")
    assert response.status_code == 503
    assert response.json()["status"] == "DOWN"
    assert response.json()["components"]["statestore"]["status"] == "DOWN"


async def test_healthz_is_500_until_components_are_initialised(tmp_path: Path) -> None:
    # A component whose init blocks: a Redis address that never answers the handshake.
    writers: list[asyncio.StreamWriter] = []  # closed at the end: a dropped one warns when it is collected
    server = await asyncio.start_server(lambda r, w: writers.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "state.yaml").write_text(
        component_yaml("statestore", "state.redis", {"redisHost": f"127.0.0.1:{port}", "dialTimeout": "30s"})
    )
    async with server, running_sidecar(tmp_path, wait=False) as sidecar:
        response = await sidecar.client.get("/v1.0/healthz")
        assert response.status_code == 500
        assert response.json() == {"errorCode": "ERR_HEALTH_NOT_READY", "message": "dapr is not ready: [components]"}
        outbound = await sidecar.client.get("/v1.0/healthz/outbound")
        assert outbound.json() == {
            "errorCode": "ERR_OUTBOUND_HEALTH_NOT_READY",
            "message": "dapr outbound is not ready",
        }
        readiness = await sidecar.client.get("/actuator/health/readiness")
        assert readiness.status_code == 503 and readiness.json()["status"] == "INIT"
    for writer in writers:
        writer.close()


async def test_secrets(sidecar: Sidecar) -> None:
    one = await sidecar.client.get("/v1.0/secrets/localsecrets/db:password")
    assert one.status_code == 200 and one.json() == {"db:password": "s3cret"}
    bulk = (await sidecar.client.get("/v1.0/secrets/localsecrets/bulk")).json()
    assert bulk == {
        "db:password": {"db:password": "s3cret"},
        "db:user": {"db:user": "admin"},
        "token": {"token": "abc"},
    }
    unknown_store = await sidecar.client.get("/v1.0/secrets/nostore/x")
    assert unknown_store.status_code == 401
    assert unknown_store.json() == {
        "errorCode": "ERR_SECRET_STORE_NOT_FOUND",
        "message": "failed finding secret store with key nostore",
    }
    missing = await sidecar.client.get("/v1.0/secrets/localsecrets/nope")
    assert missing.status_code == 500
    assert missing.json() == {
        "errorCode": "ERR_SECRET_GET",
        "message": "failed getting secret with key nope from secret store localsecrets: secret nope not found",
    }


async def test_no_secret_store_is_500(tmp_path: Path) -> None:
    async with running_sidecar(tmp_path) as sidecar:
        response = await sidecar.client.get("/v1.0/secrets/any/x")
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_SECRET_STORES_NOT_CONFIGURED",
        "message": "secret store is not configured",
    }


async def test_api_token(tmp_path: Path) -> None:
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
    async with running_sidecar(tmp_path, api_token="t0ken") as sidecar:
        refused = await sidecar.client.get("/v1.0/state/statestore/k")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "text/plain; charset=utf-8"
        assert refused.text == "invalid api token\n"
        assert (
            await sidecar.client.get("/v1.0/state/statestore/k", headers={"dapr-api-token": "t0ken"})
        ).status_code == 204
        assert (await sidecar.client.get("/v1.0/healthz")).status_code == 204


async def test_body_size_limit(tmp_path: Path) -> None:
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
    async with running_sidecar(tmp_path, max_body_size=1000) as sidecar:
        small = b'[{"key":"k","value":"' + b"x" * 900 + b'"}]'
        assert (await sidecar.client.post("/v1.0/state/statestore", content=small)).status_code == 204
        big = b'[{"key":"k","value":"' + b"y" * 1000 + b'"}]'
        refused = await sidecar.client.post("/v1.0/state/statestore", content=big)
        assert refused.status_code == 413
        assert refused.json()["errorCode"] == "ERR_BODY_READ"

        async def chunks() -> AsyncIterator[bytes]:
            yield big[:600]
            yield big[600:]

        chunked = await sidecar.client.post("/v1.0/state/statestore", content=chunks())
        assert chunked.status_code == 413
        assert (await sidecar.client.get("/v1.0/state/statestore/k")).json() == "x" * 900
