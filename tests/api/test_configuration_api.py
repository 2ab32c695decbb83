"""The configuration API's wire contract: exact statuses and bodies of every error, and the app's answers."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.sidecar import Sidecar, component_yaml, running_sidecar
from tests.subscriber_app import SubscriberApp, serving


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    """An in-memory configuration store, and no app channel."""
    (tmp_path / "configuration.yaml").write_text(component_yaml("configstore", "configuration.in-memory"))
    async with running_sidecar(tmp_path, app_id="myapp") as running:
        yield running


@pytest.fixture
async def app() -> AsyncIterator[SubscriberApp]:
    async with serving(SubscriberApp()) as running:
        yield running


@pytest.fixture
async def sqlite_sidecar(tmp_path: Path, app: SubscriberApp) -> AsyncIterator[Sidecar]:
    """A SQLite configuration store (whose table the tests can drop), with an app channel."""
    metadata = {"connectionString": str(tmp_path / "configuration.db")}
    (tmp_path / "configuration.yaml").write_text(component_yaml("configstore", "configuration.sqlite", metadata))
    async with running_sidecar(tmp_path, app_id="myapp", app_port=app.port) as running:
        yield running


def drop_table(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "configuration.db") as connection:
        connection.execute("DROP TABLE configuration")


# -- lookups ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1.0/configuration/configstore?key=a",
        "/v1.0-alpha1/configuration/configstore",
        "/v1.0/configuration/configstore/subscribe",
        "/v1.0/configuration/configstore/some-id/unsubscribe",
    ],
)
async def test_no_configuration_store_is_500_not_configured(tmp_path: Path, path: str) -> None:
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
    async with running_sidecar(tmp_path) as sidecar:
        response = await sidecar.client.get(path)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "errorCode": "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
        "message": "configuration stores not configured",
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1.0/configuration/nope"),
        ("GET", "/v1.0-alpha1/configuration/nope/subscribe?key=a"),
        ("GET", "/v1.0/configuration/nope/some-id/unsubscribe"),
        ("POST", "/v1.0-alpha1/configuration/nope"),
        ("DELETE", "/v1.0-alpha1/configuration/nope?key=a"),
    ],
)
async def test_unknown_store_is_400_not_found(sidecar: Sidecar, method: str, path: str) -> None:
    response = await sidecar.client.request(method, path, content=b"not even json")
    assert response.status_code == 400
    assert response.json() == {
        "errorCode": "ERR_CONFIGURATION_STORE_NOT_FOUND",
        "message": "configuration store nope not found",
    }


# -- get --------------------------------------------------------------------------------------------------------


async def test_get_with_nothing_found_is_204_without_body(sidecar: Sidecar) -> None:
    for path in ("/v1.0/configuration/configstore?key=a&key=b", "/v1.0/configuration/configstore"):
        response = await sidecar.client.get(path)
        assert response.status_code == 204 and response.content == b""
        assert "content-type" not in response.headers


async def test_get_leaves_out_empty_fields(sidecar: Sidecar) -> None:
    body = {"items": [{"key": "a", "value": "x", "metadata": {}}, {"key": "b", "value": "y", "metadata": {"m": "1"}}]}
    assert (await sidecar.client.post("/v1.0-alpha1/configuration/configstore", json=body)).status_code == 204
    response = await sidecar.client.get("/v1.0/configuration/configstore?key=a&key=b&metadata.ignored=1")
    assert response.status_code == 200
    assert response.json() == {
        "a": {"value": "x", "version": "1"},
        "b": {"value": "y", "version": "1", "metadata": {"m": "1"}},
    }


async def test_store_failure_on_get_is_500_with_the_keys(sqlite_sidecar: Sidecar, tmp_path: Path) -> None:
    drop_table(tmp_path)
    response = await sqlite_sidecar.client.get("/v1.0/configuration/configstore?key=a&key=b")
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_CONFIGURATION_GET",
        "message": "failed to get [a b] from Configuration store configstore: sqlite: no such table: configuration",
    }


# -- subscribe / unsubscribe -------------------------------------------------------------------------------------


async def test_subscribe_without_an_app_channel_is_500_app_channel_nil(sidecar: Sidecar) -> None:
    response = await sidecar.client.get("/v1.0/configuration/configstore/subscribe?key=a")
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_APP_CHANNEL_NIL",
        "message": "app channel is not initialized. cannot subscribe to configuration updates",
    }


async def test_store_failure_on_subscribe_is_500(sqlite_sidecar: Sidecar, tmp_path: Path) -> None:
    drop_table(tmp_path)
    response = await sqlite_sidecar.client.get("/v1.0/configuration/configstore/subscribe?key=a&key=b")
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_CONFIGURATION_SUBSCRIBE",
        "message": "failed to subscribe [a b] from Configuration store configstore: sqlite: no such table: configuration",
    }


async def test_subscribe_and_unsubscribe_bodies(sqlite_sidecar: Sidecar) -> None:
    response = await sqlite_sidecar.client.get("/v1.0-alpha1/configuration/configstore/subscribe")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    subscription = response.json()["id"]
    assert list(response.json()) == ["id"]
    response = await sqlite_sidecar.client.get(f"/v1.0-alpha1/configuration/configstore/{subscription}/unsubscribe")
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert response.headers["content-type"] == "application/json"


async def test_unknown_subscription_id_is_400_with_ok_false(sidecar: Sidecar) -> None:
    response = await sidecar.client.get("/v1.0/configuration/configstore/abc/unsubscribe")
    assert response.status_code == 400  # daprd: 500; an id it never gave out is the client's mistake
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "ok": False,
        "message": "failed to unsubscribe to configuration request abc: subscription with id abc does not exist",
    }


async def test_a_subscription_id_belongs_to_its_store(tmp_path: Path, app: SubscriberApp) -> None:
    for name in ("one", "two"):
        (tmp_path / f"{name}.yaml").write_text(component_yaml(name, "configuration.in-memory"))
    async with running_sidecar(tmp_path, app_port=app.port) as sidecar:
        subscription = (await sidecar.client.get("/v1.0/configuration/one/subscribe")).json()["id"]
        wrong = await sidecar.client.get(f"/v1.0/configuration/two/{subscription}/unsubscribe")
        assert wrong.status_code == 400 and wrong.json()["ok"] is False
        right = await sidecar.client.get(f"/v1.0/configuration/one/{subscription}/unsubscribe")
        assert right.json() == {"ok": True}


async def test_an_app_that_does_not_answer_200_is_logged_and_later_updates_still_go(
    tmp_path: Path, app: SubscriberApp, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "configuration.yaml").write_text(component_yaml("configstore", "configuration.in-memory"))
    app.answers["/configuration/configstore/k"] = [(500, b""), (200, b"")]
    async with running_sidecar(tmp_path, app_port=app.port) as sidecar:
        await sidecar.client.get("/v1.0/configuration/configstore/subscribe?key=k")
        with caplog.at_level(logging.ERROR, logger="layotto.configuration"):
            for value in ("1", "2"):
                body = {"items": [{"key": "k", "value": value}]}
                await sidecar.client.post("/v1.0-alpha1/configuration/configstore", json=body)
            deliveries = await app.wait_for("/configuration/configstore/k", 2, timeout=2)
    assert [d.event["items"] for d in deliveries] == [
        {"k": {"value": "1", "version": "1"}},
        {"k": {"value": "2", "version": "2"}},
    ]
    assert "error sending configuration item k of configstore to the app, status 500" in caplog.text


async def test_a_slow_subscriber_does_not_delay_another(tmp_path: Path, app: SubscriberApp) -> None:
    (tmp_path / "configuration.yaml").write_text(component_yaml("configstore", "configuration.in-memory"))
    app.delay["/configuration/configstore/slow"] = 2.0
    async with running_sidecar(tmp_path, app_port=app.port) as sidecar:
        await sidecar.client.get("/v1.0/configuration/configstore/subscribe?key=slow")
        await sidecar.client.get("/v1.0/configuration/configstore/subscribe?key=fast")
        body = {"items": [{"key": "slow", "value": "s"}, {"key": "fast", "value": "f"}]}
        await sidecar.client.post("/v1.0-alpha1/configuration/configstore", json=body)
        await app.wait_for("/configuration/configstore/fast", 1, timeout=1)


# -- Layotto's writes (not Dapr) --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "EOF"),
        (b"[]", 'the body must be an object: {"items": [{"key": ..., "value": ...}]}'),
        (b"{}", '"items" must be a non-empty list'),
        (b'{"items": []}', '"items" must be a non-empty list'),
        (b'{"items": [1]}', "each item must be an object"),
        (b'{"items": [{"value": "v"}]}', '"key" is a required field'),
        (b'{"items": [{"key": "k"}]}', '"value" of k must be a string'),
        (b'{"items": [{"key": "k", "value": 1}]}', '"value" of k must be a string'),
        (
            b'{"items": [{"key": "k", "value": "v", "metadata": {"a": 1}}]}',
            '"metadata" of k must be an object of strings',
        ),
        (b'{"items": [{"key": "k", "value": "v"}], "metadata": []}', '"metadata" must be an object of strings'),
    ],
    ids=[
        "empty",
        "list",
        "no-items",
        "empty-items",
        "item-not-object",
        "no-key",
        "no-value",
        "number-value",
        "bad-item-metadata",
        "bad-metadata",
    ],
)
async def test_malformed_save_is_400(sidecar: Sidecar, body: bytes, message: str) -> None:
    response = await sidecar.client.post("/v1.0-alpha1/configuration/configstore", content=body)
    assert response.status_code == 400
    assert response.json() == {"errorCode": "ERR_MALFORMED_REQUEST", "message": message}


async def test_delete_needs_a_key(sidecar: Sidecar) -> None:
    response = await sidecar.client.delete("/v1.0-alpha1/configuration/configstore")
    assert response.status_code == 400
    assert response.json() == {"errorCode": "ERR_MALFORMED_REQUEST", "message": "at least one key is required"}


async def test_store_failures_on_writes_are_500(sqlite_sidecar: Sidecar, tmp_path: Path) -> None:
    drop_table(tmp_path)
    saved = await sqlite_sidecar.client.post(
        "/v1.0-alpha1/configuration/configstore", content=orjson.dumps({"items": [{"key": "a", "value": "v"}]})
    )
    assert saved.status_code == 500
    assert saved.json() == {
        "errorCode": "ERR_CONFIGURATION_SAVE",
        "message": "failed to save [a] in Configuration store configstore: sqlite: no such table: configuration",
    }
    deleted = await sqlite_sidecar.client.delete("/v1.0-alpha1/configuration/configstore?key=a&key=b")
    assert deleted.status_code == 500
    assert deleted.json() == {
        "errorCode": "ERR_CONFIGURATION_DELETE",
        "message": "failed to delete [a b] from Configuration store configstore: sqlite: no such table: configuration",
    }


async def test_writes_are_only_under_the_alpha_version(sidecar: Sidecar) -> None:
    response = await sidecar.client.post(
        "/v1.0/configuration/configstore", json={"items": [{"key": "a", "value": "v"}]}
    )
    assert response.status_code != 204
    await asyncio.sleep(0)
    assert (await sidecar.client.get("/v1.0/configuration/configstore?key=a")).status_code == 204
