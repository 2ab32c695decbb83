"""The state API's wire contract: exact statuses, headers and error bodies (store-independent cases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.services import require_redis
from tests.sidecar import Sidecar, component_yaml, running_sidecar

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RESOURCE_INFO = "type.googleapis.com/google.rpc.ResourceInfo"


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
    async with running_sidecar(tmp_path, app_id="myapp") as running:
        yield running


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b"foobar",
        b"[{}]",
        b'[{"key":"key1","value":"value1"},]',
        b'[{"key":"key1","value":"value1","etag":123}]',
        b'[{"ey":"key0","value":"value1"}]',
        b"[1]",
    ],
    ids=[
        "empty",
        "object",
        "not-json",
        "empty-item",
        "trailing-comma",
        "numeric-etag",
        "misspelled-key",
        "not-an-object",
    ],
)
async def test_malformed_save_bodies_are_400(sidecar: Sidecar, body: bytes) -> None:
    response = await sidecar.client.post("/v1.0/state/statestore", content=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert set(response.json()) == {"errorCode", "message"}


async def test_missing_key_message_and_empty_body_message(sidecar: Sidecar) -> None:
    missing = await sidecar.client.post("/v1.0/state/statestore", content=b"[{}]")
    assert missing.json() == {"errorCode": "ERR_MALFORMED_REQUEST", "message": '"key" is a required field'}
    empty = await sidecar.client.post("/v1.0/state/statestore", content=b"")
    assert empty.json() == {"errorCode": "ERR_MALFORMED_REQUEST", "message": "EOF"}


@pytest.mark.parametrize(
    "body",
    [b"[]", b'[{"key":"key1","vae":"value1"}]', b'[{"Key":"key1","VALUE":"v"}]'],
    ids=["empty-list", "unknown-field", "case-insensitive-fields"],
)
async def test_accepted_save_bodies_are_204(sidecar: Sidecar, body: bytes) -> None:
    response = await sidecar.client.put("/v1.0/state/statestore", content=body)
    assert response.status_code == 204 and response.content == b""


async def test_illegal_key_is_a_rich_400(sidecar: Sidecar) -> None:
    response = await sidecar.client.post("/v1.0/state/statestore", content=b'[{"key":"ke||y1","value":"value1"}]')
    assert response.status_code == 400
    message = "api error: code = InvalidArgument desc = input key/keyPrefix 'ke||y1' can't contain '||'"
    assert response.json() == {
        "errorCode": "ERR_MALFORMED_REQUEST",
        "message": message,
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "field_violations": [{"field": "ke||y1", "description": message}],
            },
            {
                "@type": RESOURCE_INFO,
                "resource_type": "state",
                "resource_name": "statestore",
                "owner": "",
                "description": "",
            },
            {"@type": ERROR_INFO, "reason": "DAPR_STATE_ILLEGAL_KEY", "domain": "dapr.io", "metadata": None},
        ],
    }
    assert (await sidecar.client.get("/v1.0/state/statestore/a||b")).status_code == 400
    assert (await sidecar.client.delete("/v1.0/state/statestore/a||b")).status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1.0/state/nostore/k", None),
        ("POST", "/v1.0/state/nostore", b"not even json"),
        ("DELETE", "/v1.0/state/nostore/k", None),
        ("POST", "/v1.0/state/nostore/bulk", b'{"keys":["a"]}'),
        ("POST", "/v1.0/state/nostore/transaction", b'{"operations":[]}'),
        ("POST", "/v1.0-alpha1/state/nostore/query", b"{}"),
    ],
)
async def test_unknown_store_is_a_rich_400_on_every_endpoint(
    sidecar: Sidecar, method: str, path: str, body: bytes | None
) -> None:
    response = await sidecar.client.request(method, path, content=body)
    assert response.status_code == 400
    assert response.json() == {
        "errorCode": "ERR_STATE_STORE_NOT_FOUND",
        "message": "state store nostore is not found",
        "details": [
            {"@type": ERROR_INFO, "reason": "DAPR_STATE_NOT_FOUND", "domain": "dapr.io", "metadata": {"appID": "myapp"}}
        ],
    }


async def test_no_state_store_at_all_is_500_not_configured(tmp_path: Path) -> None:
    async with running_sidecar(tmp_path, app_id="myapp") as empty:
        response = await empty.client.get("/v1.0/state/statestore/k")
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_STATE_STORE_NOT_CONFIGURED",
        "message": "state store statestore is not configured",
        "details": [
            {
                "@type": ERROR_INFO,
                "reason": "DAPR_STATE_NOT_CONFIGURED",
                "domain": "dapr.io",
                "metadata": {"appID": "myapp"},
            }
        ],
    }


async def test_get_headers_and_body(sidecar: Sidecar) -> None:
    await sidecar.client.post("/v1.0/state/statestore", content=b'[{"key":"k","value":"value1"}]')
    response = await sidecar.client.get("/v1.0/state/statestore/k")
    assert response.status_code == 200
    assert response.content == b'"value1"'
    assert response.headers["content-type"] == "application/json"
    assert response.headers["etag"]
    assert "metadata.ttlexpiretime" not in response.headers


async def test_keys_may_hold_escaped_slashes_and_unicode(sidecar: Sidecar) -> None:
    await sidecar.client.post("/v1.0/state/statestore", content=orjson.dumps([{"key": "a/b é", "value": 1}]))
    assert (await sidecar.client.get("/v1.0/state/statestore/a%2Fb%20%C3%A9")).json() == 1


async def test_transaction_errors(sidecar: Sidecar) -> None:
    unknown = await sidecar.client.post(
        "/v1.0/state/statestore/transaction", content=b'{"operations":[{"operation":"merge","request":{"key":"k"}}]}'
    )
    assert unknown.status_code == 400
    assert unknown.json() == {
        "errorCode": "ERR_NOT_SUPPORTED_STATE_OPERATION",
        "message": "operation type merge not supported",
    }
    malformed = await sidecar.client.post("/v1.0/state/statestore/transaction", content=b"[")
    assert malformed.status_code == 400 and malformed.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    illegal = await sidecar.client.post(
        "/v1.0/state/statestore/transaction",
        content=b'{"operations":[{"operation":"upsert","request":{"key":"a||b"}}]}',
    )
    assert illegal.status_code == 400 and illegal.json()["details"][2]["reason"] == "DAPR_STATE_ILLEGAL_KEY"


async def test_bulk_get_bad_json_is_400_with_dapr_prefix(sidecar: Sidecar) -> None:
    response = await sidecar.client.post("/v1.0/state/statestore/bulk", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["message"].startswith("failed deserializing HTTP body: ")


async def test_query_metadata_is_merged_into_items(sidecar: Sidecar) -> None:
    response = await sidecar.client.post(
        "/v1.0/state/statestore?metadata.ttlInSeconds=100", content=b'[{"key":"ttl","value":1}]'
    )
    assert response.status_code == 204
    assert "metadata.ttlexpiretime" in (await sidecar.client.get("/v1.0/state/statestore/ttl")).headers


async def test_redis_specific_errors(tmp_path: Path) -> None:
    (tmp_path / "redis.yaml").write_text(component_yaml("statestore", "state.redis", {"redisHost": require_redis()}))
    async with running_sidecar(tmp_path) as sidecar:
        response = await sidecar.client.post("/v1.0-alpha1/state/statestore/query", content=b"{}")
        invalid = await sidecar.client.post("/v1.0/state/statestore", content=b'[{"key":"k","value":1,"etag":"abc"}]')
        invalid_delete = await sidecar.client.delete("/v1.0/state/statestore/k", headers={"if-match": "abc"})
    assert invalid.status_code == 400
    assert invalid.json()["errorCode"] == "ERR_STATE_SAVE"
    assert invalid.json()["message"].startswith("failed saving state in state store statestore: invalid etag value: ")
    assert invalid_delete.status_code == 400
    assert invalid_delete.json()["message"].startswith("failed deleting state with key k: invalid etag value: ")
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_STATE_STORE_NOT_SUPPORTED",
        "message": "state store does not support querying",
        "details": [
            {
                "@type": RESOURCE_INFO,
                "resource_type": "state",
                "resource_name": "statestore",
                "owner": "",
                "description": "",
            },
            {"@type": ERROR_INFO, "reason": "DAPR_STATE_QUERYING_NOT_SUPPORTED", "domain": "dapr.io", "metadata": None},
        ],
    }
