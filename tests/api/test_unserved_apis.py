"""Dapr APIs this sidecar does not serve answer ``501 ERR_NOT_IMPLEMENTED`` naming the API; other methods and
paths keep Dapr's fallback to service invocation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.sidecar import Sidecar, component_yaml, running_sidecar

NO_APP_ID = "failed getting app id either from the URL path or the header dapr-app-id"


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
    async with running_sidecar(tmp_path, app_id="myapp") as running:
        yield running


@pytest.mark.parametrize(
    ("method", "path", "api"),
    [
        ("POST", "/v1.0/bindings/myqueue", "bindings"),
        ("PUT", "/v1.0/bindings/myqueue", "bindings"),
        ("POST", "/v1.0/actors/Counter/1/method/increment", "actors"),
        ("GET", "/v1.0/actors/Counter/1/state/count", "actors"),
        ("PUT", "/v1.0/actors/Counter/1/reminders/r", "actors"),
        ("POST", "/v1.0-beta1/workflows/dapr/OrderFlow/start", "workflows"),
        ("GET", "/v1.0-beta1/workflows/dapr/abc", "workflows"),
        ("POST", "/v1.0/workflows/dapr/OrderFlow/start", "workflows"),
        ("POST", "/v1.0-alpha1/jobs/nightly", "jobs"),
        ("GET", "/v1.0-alpha1/jobs/nightly", "jobs"),
        ("DELETE", "/v1.0-alpha1/jobs/nightly", "jobs"),
        ("POST", "/v1.0-alpha1/conversation/echo/converse", "conversation"),
        ("POST", "/v1.0-alpha2/conversation/echo/converse", "conversation"),
        ("PUT", "/v1.0-alpha1/crypto/vault/encrypt", "cryptography"),
        ("PUT", "/v1.0-alpha1/crypto/vault/decrypt", "cryptography"),
    ],
)
async def test_an_unserved_api_is_501_naming_it(sidecar: Sidecar, method: str, path: str, api: str) -> None:
    response = await sidecar.client.request(method, path, content=b"{}")
    assert response.status_code == 501
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "errorCode": "ERR_NOT_IMPLEMENTED",
        "message": f"the {api} API is not implemented by this sidecar (Layotto for Python)",
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1.0/bindings/myqueue"),  # daprd declares POST and PUT only
        ("POST", "/v1.0/bindings"),
        ("PATCH", "/v1.0-alpha1/jobs/nightly"),
        ("GET", "/v1.0-alpha1/conversation/echo/converse"),
        ("GET", "/v1.0/actorsx/a"),
    ],
)
async def test_other_methods_and_paths_still_fall_to_invocation(sidecar: Sidecar, method: str, path: str) -> None:
    response = await sidecar.client.request(method, path)
    assert response.status_code == 404
    assert response.json() == {"errorCode": "ERR_DIRECT_INVOKE", "message": NO_APP_ID}


async def test_an_escaped_slash_cannot_reach_an_unserved_route_from_another(sidecar: Sidecar) -> None:
    response = await sidecar.client.post("/v1.0/state/statestore%2F..%2F..%2Fbindings%2Fq", content=b"[]")
    assert response.status_code != 501
