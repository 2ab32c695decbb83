"""The publish API's wire contract: statuses and error bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from building_blocks.pubsub.base import PublishRequest
from tests.sidecar import Sidecar, component_yaml, running_sidecar

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RESOURCE_INFO = "type.googleapis.com/google.rpc.ResourceInfo"


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    scoped = {"publishingScopes": "myapp=allowed,other", "protectedTopics": "secret"}
    (tmp_path / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.in-memory"))
    (tmp_path / "scoped.yaml").write_text(component_yaml("scoped", "pubsub.in-memory", scoped))
    async with running_sidecar(tmp_path, app_id="myapp") as running:
        yield running


async def test_publish_is_204(sidecar: Sidecar) -> None:
    response = await sidecar.client.post("/v1.0/publish/pubsub/orders/eu/1", content=b"hi")
    assert response.status_code == 204 and response.content == b""
    assert (await sidecar.client.put("/v1.0/publish/pubsub/orders", content=b"hi")).status_code == 204


async def test_unknown_pubsub_is_404(sidecar: Sidecar) -> None:
    response = await sidecar.client.post("/v1.0/publish/nope/orders", content=b"hi")
    assert response.status_code == 404
    assert response.json() == {
        "errorCode": "ERR_PUBSUB_NOT_FOUND",
        "message": "pubsub nope is not found",
        "details": [
            {
                "@type": ERROR_INFO,
                "reason": "DAPR_PUBSUB_NOT_FOUND",
                "domain": "dapr.io",
                "metadata": {"appID": "myapp"},
            }
        ],
    }


async def test_no_pubsub_at_all_is_400(tmp_path: Path) -> None:
    async with running_sidecar(tmp_path) as empty:
        response = await empty.client.post("/v1.0/publish/pubsub/orders", content=b"hi")
    assert response.status_code == 400
    assert response.json()["errorCode"] == "ERR_PUBSUB_NOT_CONFIGURED"


async def test_missing_topic_falls_to_invocation(sidecar: Sidecar) -> None:
    response = await sidecar.client.post("/v1.0/publish/pubsub", content=b"hi")
    assert response.status_code == 404 and response.json()["errorCode"] == "ERR_DIRECT_INVOKE"


@pytest.mark.parametrize(
    ("topic", "allowed"), [("allowed", True), ("other", True), ("elsewhere", False), ("secret", False)]
)
async def test_topic_scoping(sidecar: Sidecar, topic: str, allowed: bool) -> None:
    response = await sidecar.client.post(f"/v1.0/publish/scoped/{topic}", content=b"hi")
    if allowed:
        assert response.status_code == 204
        return
    assert response.status_code == 403
    body = response.json()
    assert body["errorCode"] == "ERR_PUBSUB_FORBIDDEN"
    assert body["message"] == f"topic {topic} is not allowed for app id myapp"
    assert body["details"][0]["reason"] == "DAPR_PUBSUB_FORBIDDEN"
    assert body["details"][1]["@type"] == RESOURCE_INFO and body["details"][1]["resource_name"] == "scoped"


async def test_invalid_raw_payload_flag(sidecar: Sidecar) -> None:
    response = await sidecar.client.post("/v1.0/publish/pubsub/t?metadata.rawPayload=invalidBooleanValue", content=b"x")
    assert response.status_code == 400
    body = response.json()
    assert body["errorCode"] == "ERR_PUBSUB_REQUEST_METADATA"
    assert body["message"] == (
        "failed deserializing metadata. Error: rawPayload value must be a valid boolean: actual is 'invalidBooleanValue'"
    )
    assert body["details"][0]["reason"] == "DAPR_PUBSUB_METADATA_DESERIALIZATION"


async def test_invalid_cloudevent(sidecar: Sidecar) -> None:
    response = await sidecar.client.post(
        "/v1.0/publish/pubsub/t", content=b"not json", headers={"content-type": "application/cloudevents+json"}
    )
    assert response.status_code == 400  # daprd: 500; the client's mistake
    assert response.json()["errorCode"] == "ERR_PUBSUB_CLOUD_EVENTS_SER"
    assert response.json()["message"] == "cannot create cloudevent"


async def test_bulk_publish(sidecar: Sidecar) -> None:
    entries = [
        {"entryId": "1", "event": "text", "contentType": "text/plain"},
        {"entryId": "2", "event": {"a": 1}, "contentType": "application/json", "metadata": {"k": "v"}},
        {"entryId": "3", "event": "AAEC", "contentType": "application/octet-stream"},
    ]
    for prefix in ("/v1.0-alpha1", "/v1.0"):
        response = await sidecar.client.post(f"{prefix}/publish/bulk/pubsub/orders", content=orjson.dumps(entries))
        assert response.status_code == 204, response.text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{}", "DAPR_PUBSUB_UNMARSHAL_EVENTS"),
        (b"nope", "DAPR_PUBSUB_UNMARSHAL_EVENTS"),
        (b'[{"event": "x", "contentType": "text/plain"}]', "DAPR_PUBSUB_MARSHAL_EVENTS"),
        (
            b'[{"entryId": "1", "event": "x", "contentType": "text/plain"}, {"entryId": "1", "event": "y", "contentType": "text/plain"}]',
            "DAPR_PUBSUB_MARSHAL_EVENTS",
        ),
        (b'[{"entryId": "1", "event": {"a": 1}, "contentType": "text/plain"}]', "DAPR_PUBSUB_MARSHAL_ENVELOPE"),
        (b'[{"entryId": "1", "event": "x"}]', "DAPR_PUBSUB_MARSHAL_ENVELOPE"),
    ],
)
async def test_bulk_publish_validation(sidecar: Sidecar, body: bytes, reason: str) -> None:
    response = await sidecar.client.post("/v1.0-alpha1/publish/bulk/pubsub/orders", content=body)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "ERR_PUBSUB_EVENTS_SER"
    assert response.json()["details"][0]["reason"] == reason


async def test_bulk_publish_reports_failed_entries(sidecar: Sidecar) -> None:
    pubsub = sidecar.runtime.pubsub.component("pubsub")

    async def failing(request: PublishRequest) -> None:
        if request.data.endswith(b'"bad"}'):
            raise RuntimeError("broker refused")

    pubsub.publish = failing  # type: ignore[method-assign]
    entries = [
        {"entryId": "ok", "event": "good", "contentType": "text/plain"},
        {"entryId": "ko", "event": "bad", "contentType": "text/plain"},
    ]
    response = await sidecar.client.post("/v1.0-alpha1/publish/bulk/pubsub/orders", content=orjson.dumps(entries))
    assert response.status_code == 500
    assert response.json() == {
        "failedEntries": [{"entryId": "ko", "error": "broker refused"}],
        "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
    }
    assert response.headers["metadata.responsedata"] == response.text


async def test_publish_failure_is_500(sidecar: Sidecar) -> None:
    pubsub = sidecar.runtime.pubsub.component("pubsub")

    async def failing(request: PublishRequest) -> None:
        raise ConnectionError("broker down")

    pubsub.publish = failing  # type: ignore[method-assign]
    response = await sidecar.client.post("/v1.0/publish/pubsub/orders", content=b"x")
    assert response.status_code == 500
    body = response.json()
    assert body["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE"
    assert body["message"] == "error when publishing to topic orders in pubsub pubsub: broker down"
    assert body["details"][0]["reason"] == "DAPR_PUBSUB_PUBLISH_MESSAGE"


async def test_cloudevent_passthrough_overrides_and_ttl(tmp_path: Path) -> None:
    from tests.subscriber_app import SubscriberApp, serving

    (tmp_path / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.in-memory"))
    subscriptions = [
        {"pubsubname": "pubsub", "topic": t, "route": f"/{t}"} for t in ("ce", "override", "ttl", "expired")
    ]
    async with (
        serving(SubscriberApp(subscriptions)) as app,
        running_sidecar(tmp_path, app_id="pub", app_port=app.port) as sidecar,
    ):
        while len(sidecar.runtime.pubsub.active) < 4:
            await asyncio.sleep(0.02)
        own = {
            "id": "my-id",
            "source": "mine",
            "type": "my.type",
            "specversion": "1.0",
            "topic": "wrong",
            "data": {"k": 1},
        }
        ce_headers = {
            "content-type": "application/cloudevents+json",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }
        assert (
            await sidecar.client.post("/v1.0/publish/pubsub/ce", content=orjson.dumps(own), headers=ce_headers)
        ).status_code == 204
        query = "?metadata.cloudevent.id=fixed&metadata.cloudevent.type=t.x&metadata.cloudevent.subject=s&metadata.cloudevent.source=src"
        assert (await sidecar.client.post(f"/v1.0/publish/pubsub/override{query}", content=b"x")).status_code == 204
        assert (
            await sidecar.client.post("/v1.0/publish/pubsub/ttl?metadata.ttlInSeconds=60", content=b"x")
        ).status_code == 204
        stale = {"id": "old", "specversion": "1.0", "expiration": "2000-01-01T00:00:00Z", "data": "x"}
        await sidecar.client.post(
            "/v1.0/publish/pubsub/expired",
            content=orjson.dumps(stale),
            headers={"content-type": "application/cloudevents+json"},
        )
        (ce,) = [d.event for d in await app.wait_for("/ce", 1)]
        (override,) = [d.event for d in await app.wait_for("/override", 1)]
        (ttl,) = [d.event for d in await app.wait_for("/ttl", 1)]
        await asyncio.sleep(0.3)
    assert ce["id"] == "my-id" and ce["source"] == "mine" and ce["type"] == "my.type" and ce["topic"] == "ce"
    assert ce["pubsubname"] == "pubsub" and ce["time"] and ce["traceparent"] == ce_headers["traceparent"]
    assert "datacontenttype" not in ce
    assert (override["id"], override["type"], override["subject"], override["source"]) == ("fixed", "t.x", "s", "src")
    assert ttl["expiration"].endswith("Z")
    assert app.at("/expired") == []
