"""Bad client input on every endpoint: always Dapr's answer for it (a 4xx with a specific code, or the 500 Dapr
itself gives when its store refuses a value), never the generic ``ERROR``, never a traceback, and nothing
stored changes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from app.errors import render_error
from building_blocks.pubsub.base import PublishRequest
from tests.sidecar import Sidecar, component_yaml, running_sidecar

#: The 500s Dapr documents (its backend failures and the few 500s of its own), by code.
DAPR_500_CODES = {
    "ERR_STATE_GET",
    "ERR_STATE_SAVE",
    "ERR_STATE_DELETE",
    "ERR_STATE_BULK_GET",
    "ERR_STATE_TRANSACTION",
    "ERR_STATE_QUERY",
    "ERR_STATE_STORE_NOT_SUPPORTED",
    "ERR_PUBSUB_PUBLISH_MESSAGE",
    "ERR_PUBSUB_CLOUD_EVENTS_SER",
    "ERR_DIRECT_INVOKE",
    "ERR_APP_CHANNEL_NIL",
    "ERR_SECRET_GET",
    "ERR_TRY_LOCK",
    "ERR_UNLOCK",
    "ERR_RENEW_LOCK",
    "ERR_SEQUENCER_GET_NEXT_ID",
    "ERR_SEQUENCER_GET_SEGMENT",
    "ERR_CONFIGURATION_GET",
    "ERR_CONFIGURATION_SUBSCRIBE",
    "ERR_CONFIGURATION_SAVE",
    "ERR_CONFIGURATION_DELETE",
}

GARBAGE = [
    b"",
    b"null",
    b"0",
    b'"text"',
    b"[null]",
    b"[[]]",
    b'{"keys": "a"}',
    b'{"keys": [1, 2]}',
    b'{"operations": {}}',
    b'{"operations": [{"operation": "upsert"}]}',
    b'{"operations": [{"operation": "upsert", "request": []}]}',
    b'{"operations": [{"operation": "delete", "request": {"key": 5}}]}',
    b'[{"key": "k", "metadata": {"a": 1}}]',
    b'[{"key": "k", "metadata": []}]',
    b'[{"key": "k", "options": "x"}]',
    b'[{"key": "k", "options": {"concurrency": 1}}]',
    b'[{"key": "k", "options": {"consistency": {}}}]',
    b'[{"key": ["k"]}]',
    b'[{"key": "k", "value": 1e400}]',
    b'{"filter": {"EQ": []}}',
    b'{"filter": {"AND": [{"EQ": {"a": 1}}]}}',
    b'{"page": {"limit": -1}}',
    b'{"sort": [{"key": ""}]}',
    b"\xff\xfe\x00",
    b"[" * 10000,
    b"[" * 20000 + b"]" * 20000,
]
ENDPOINTS = [
    "/v1.0/state/statestore",
    "/v1.0/state/statestore/bulk",
    "/v1.0/state/statestore/transaction",
    "/v1.0-alpha1/state/statestore/query",
]
#: A wrong JSON value for each type a field can expect.
WRONG = [None, 1, -1, 1.5, 99999999999999999999, "", "x", [], {}, True, ["x"], {"a": {"b": 1}}]


def assert_dapr_error(response: httpx.Response, what: object) -> None:
    """``response`` is a success or Dapr's error for the mistake: a 4xx, or a 500 Dapr documents."""
    assert "Traceback" not in response.text, what
    if response.status_code < 400:
        return
    assert response.status_code in (400, 401, 403, 404, 409, 500), (what, response.status_code, response.text)
    error = response.json()
    code = error.get("errorCode") if "errorCode" in error else "ERR_CONFIGURATION_UNSUBSCRIBE"
    assert code != "ERROR" and code.startswith("ERR_") and error["message"], (what, error)
    if response.status_code == 500:
        assert code in DAPR_500_CODES or code == "ERR_CONFIGURATION_UNSUBSCRIBE", (what, error)


def with_field(base: Any, path: str, value: Any) -> bytes:
    """``base`` as JSON with the field at dotted ``path`` (list indexes as numbers) replaced by ``value``."""
    document = orjson.loads(orjson.dumps(base))
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return json.dumps(document).encode()


def mutations(base: Any, paths: list[str]) -> list[tuple[str, bytes]]:
    return [(f"{path}={value!r}", with_field(base, path, value)) for path in paths for value in WRONG]


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    specs = {
        "statestore": ("state.sqlite", {"connectionString": str(tmp_path / "state.db")}),
        "pubsub": ("pubsub.in-memory", {}),
        "lockstore": ("lock.in-memory", {}),
        "sequencer": ("sequencer.in-memory", {}),
        "configstore": ("configuration.in-memory", {}),
        "secretstore": ("secretstores.local.file", {"secretsFile": str(tmp_path / "secrets.json")}),
    }
    (tmp_path / "secrets.json").write_text('{"a": "b"}')
    for name, (component_type, metadata) in specs.items():
        (tmp_path / f"{name}.yaml").write_text(component_yaml(name, component_type, metadata))
    async with running_sidecar(tmp_path, app_id="myapp") as running:
        yield running


@pytest.mark.parametrize("store", ["state.in-memory", "state.sqlite"])
async def test_garbage_never_breaks_the_sidecar_or_the_data(tmp_path: Path, store: str) -> None:
    metadata = {"connectionString": str(tmp_path / "s.db")} if store == "state.sqlite" else {}
    (tmp_path / "s.yaml").write_text(component_yaml("statestore", store, metadata))
    async with running_sidecar(tmp_path) as sidecar:
        await sidecar.client.post("/v1.0/state/statestore", json=[{"key": "k", "value": {"kept": 1}}])
        before = await sidecar.client.get("/v1.0/state/statestore/k")
        for endpoint in ENDPOINTS:
            for body in GARBAGE:
                response = await sidecar.client.post(endpoint, content=body)
                assert_dapr_error(response, (endpoint, body[:40]))
        after = await sidecar.client.get("/v1.0/state/statestore/k")
        assert after.content == before.content and after.headers["etag"] == before.headers["etag"]


async def test_every_field_of_every_body_with_a_wrong_type(sidecar: Sidecar) -> None:
    state_item = {
        "key": "k",
        "value": {"a": 1},
        "etag": "",
        "metadata": {"ttlInSeconds": "60"},
        "options": {"concurrency": "last-write", "consistency": "strong"},
        "contentType": "application/json",
    }
    item_fields = ["key", "etag", "metadata", "metadata.ttlInSeconds", "options"]
    item_fields += ["options.concurrency", "options.consistency", "contentType"]
    bodies: dict[str, list[tuple[str, bytes]]] = {
        "/v1.0/state/statestore": mutations([state_item], ["0", *(f"0.{f}" for f in item_fields)]),
        "/v1.0/state/statestore/bulk": mutations(
            {"keys": ["k"], "parallelism": 2, "metadata": {"a": "b"}}, ["keys", "keys.0", "metadata", "metadata.a"]
        ),
        "/v1.0/state/statestore/transaction": mutations(
            {"operations": [{"operation": "upsert", "request": state_item}], "metadata": {"a": "b"}},
            ["operations", "operations.0", "operations.0.operation", "operations.0.request", "metadata"]
            + [f"operations.0.request.{f}" for f in item_fields],
        ),
        "/v1.0/publish/bulk/pubsub/t": mutations(
            [{"entryId": "1", "event": {"a": 1}, "contentType": "application/json", "metadata": {"k": "v"}}],
            ["0", "0.entryId", "0.event", "0.contentType", "0.metadata", "0.metadata.k"],
        ),
        "/v1.0-alpha1/lock/lockstore": mutations(
            {"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 10}, ["resourceId", "lockOwner", "expiryInSeconds"]
        ),
        "/v1.0-alpha1/unlock/lockstore": mutations({"resourceId": "r", "lockOwner": "o"}, ["resourceId", "lockOwner"]),
        "/v1.0-alpha1/lock/lockstore/renew": mutations(
            {"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 10}, ["expiryInSeconds"]
        ),
        "/v1.0-alpha1/sequencer/sequencer": mutations(
            {"key": "k", "options": {"increment": "WEAK"}, "metadata": {"a": "b"}},
            ["key", "options", "options.increment", "metadata", "metadata.a"],
        )
        + mutations({"key": "k", "size": 3}, ["size"]),
        "/v1.0-alpha1/configuration/configstore": mutations(
            {"items": [{"key": "k", "value": "v", "metadata": {"a": "b"}}], "metadata": {"a": "b"}},
            ["items", "items.0", "items.0.key", "items.0.value", "items.0.metadata", "items.0.metadata.a", "metadata"],
        ),
    }
    for endpoint, cases in bodies.items():
        for label, body in cases:
            assert_dapr_error(await sidecar.client.post(endpoint, content=body), (endpoint, label))


BOGUS = ["bogus", "", "99999999999999999999", "-1", "1e3", "%FF", "1h", "-5s", "true"]


async def test_every_documented_query_parameter_with_bogus_values(sidecar: Sidecar) -> None:
    await sidecar.client.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}])
    requests: list[tuple[str, str, str, bytes]] = []
    for value in BOGUS:
        requests += [
            ("GET", "/v1.0/state/statestore/k", f"consistency={value}", b""),
            ("GET", "/v1.0/state/statestore/k", f"metadata.contentType={value}", b""),
            ("DELETE", "/v1.0/state/statestore/gone", f"consistency={value}", b""),
            ("DELETE", "/v1.0/state/statestore/gone", f"concurrency={value}", b""),
            ("POST", "/v1.0/state/statestore", f"metadata.ttlInSeconds={value}", b'[{"key":"t","value":1}]'),
            ("POST", "/v1.0/state/statestore/bulk", f"metadata.x={value}", b'{"keys":["k"]}'),
            ("POST", "/v1.0/publish/pubsub/t", f"metadata.ttlInSeconds={value}", b"{}"),
            ("POST", "/v1.0/publish/pubsub/t", f"metadata.ttl={value}", b"{}"),
            ("POST", "/v1.0/publish/pubsub/t", f"metadata.rawPayload={value}", b"{}"),
            ("POST", "/v1.0/publish/bulk/pubsub/t", f"metadata.ttlInSeconds={value}", b"[]"),
            ("GET", "/v1.0/secrets/secretstore/a", f"metadata.x={value}", b""),
            ("GET", "/v1.0/secrets/secretstore/bulk", f"metadata.x={value}", b""),
            ("GET", "/v1.0/configuration/configstore", f"key={value}", b""),
            ("DELETE", "/v1.0-alpha1/configuration/configstore", f"key={value}", b""),
        ]
    for method, path, query, body in requests:
        response = await sidecar.client.request(method, f"{path}?{query}", content=body)
        assert_dapr_error(response, (method, path, query))
    assert (await sidecar.client.get("/v1.0/state/statestore/k")).content == b"1"


async def test_get_takes_any_consistency_as_dapr_stores_do(sidecar: Sidecar) -> None:
    """Dapr passes ``consistency`` to the store, and its stores read it only on writes."""
    await sidecar.client.post("/v1.0/state/statestore", json=[{"key": "k", "value": "v"}])
    for consistency in ("bogus", "strong", "eventual", ""):
        response = await sidecar.client.get(f"/v1.0/state/statestore/k?consistency={consistency}")
        assert (response.status_code, response.content) == (200, b'"v"'), consistency


@pytest.mark.parametrize(("option", "value", "kind"), [("concurrency", 1, "number"), ("consistency", {}, "object")])
async def test_an_option_that_is_not_a_string_is_400(sidecar: Sidecar, option: str, value: Any, kind: str) -> None:
    await sidecar.client.post("/v1.0/state/statestore", json=[{"key": "k", "value": "kept"}])
    item = {"key": "k", "value": "new", "options": {option: value}}
    response = await sidecar.client.post("/v1.0/state/statestore", json=[item])
    assert response.status_code == 400
    assert response.json() == {
        "errorCode": "ERR_MALFORMED_REQUEST",
        "message": f"json: cannot unmarshal {kind} into Go struct field SetStateOption.options.{option} of type string",
    }
    transaction = {"operations": [{"operation": "upsert", "request": item}]}
    response = await sidecar.client.post("/v1.0/state/statestore/transaction", json=transaction)
    assert response.status_code == 400 and response.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert (await sidecar.client.get("/v1.0/state/statestore/k")).content == b'"kept"'


async def test_an_unknown_option_value_is_a_400_with_daprs_code(sidecar: Sidecar) -> None:
    """Dapr's store refuses it and daprd answers 500; it is the client's mistake, so here it is a 400."""
    response = await sidecar.client.post(
        "/v1.0/state/statestore", json=[{"key": "k", "value": 1, "options": {"concurrency": "x"}}]
    )
    assert response.status_code == 400
    assert response.json() == {
        "errorCode": "ERR_STATE_SAVE",
        "message": "failed saving state in state store statestore: unrecognized concurrency model 'x'",
    }


@pytest.mark.parametrize(
    ("ttl", "detail"),
    [
        ("99999999999999999999", 'strconv.ParseInt: parsing "99999999999999999999": value out of range'),
        ("9223372036854775807", "must be -1 or greater"),
        ("-2", "must be -1 or greater"),
        ("1_000", 'strconv.ParseInt: parsing "1_000": invalid syntax'),
    ],
)
async def test_a_ttl_dapr_stores_refuse_is_a_400_err_state_save(
    sidecar: Sidecar, ttl: str, detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await sidecar.client.post(
            f"/v1.0/state/statestore?metadata.ttlInSeconds={ttl}", json=[{"key": "t", "value": 1}]
        )
    assert response.status_code == 400
    assert response.json() == {
        "errorCode": "ERR_STATE_SAVE",
        "message": f"failed saving state in state store statestore: incorrect value for metadata 'ttlInSeconds': {detail}",
    }
    assert (await sidecar.client.get("/v1.0/state/statestore/t")).status_code == 204
    assert "unexpectedly" not in caplog.text and "Traceback" not in caplog.text


def capture_publishes(sidecar: Sidecar) -> list[PublishRequest]:
    published: list[PublishRequest] = []
    pubsub = sidecar.runtime.pubsub.component("pubsub")

    async def publish(request: PublishRequest) -> None:
        published.append(request)

    pubsub.publish = publish  # type: ignore[method-assign]
    return published


@pytest.mark.parametrize(
    ("query", "expires_in"),
    [
        ("metadata.ttlInSeconds=99999999999999999999", None),  # beyond int64: Dapr ignores it
        ("metadata.ttlInSeconds=bogus", None),
        ("metadata.ttlInSeconds=-1", None),
        ("metadata.ttlInSeconds=0", timedelta(0)),  # Go reads "0" as a duration: expired at once
        ("metadata.ttlInSeconds=60", timedelta(seconds=60)),
        ("metadata.ttl=90s", timedelta(seconds=90)),
        ("metadata.ttl=1h30m", timedelta(minutes=90)),
        ("metadata.ttlInSeconds=9223372036854775807", timedelta(microseconds=(2**63 - 1) // 1000)),  # Go's cap
    ],
)
async def test_publish_ttl_as_dapr_parses_it(sidecar: Sidecar, query: str, expires_in: timedelta | None) -> None:
    published = capture_publishes(sidecar)
    before = datetime.now(UTC).replace(microsecond=0)
    for path in ("/v1.0/publish/pubsub/t", "/v1.0/publish/bulk/pubsub/t"):
        body = b"{}" if "bulk" not in path else b'[{"entryId":"1","event":{},"contentType":"application/json"}]'
        response = await sidecar.client.post(
            f"{path}?{query}", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 204, response.text
    after = datetime.now(UTC)
    for request in published:
        event = orjson.loads(request.data)
        if expires_in is None:
            assert "expiration" not in event
            continue
        expiration = datetime.fromisoformat(event["expiration"].replace("Z", "+00:00"))
        assert before + expires_in - timedelta(seconds=1) <= expiration <= after + expires_in


@pytest.mark.parametrize(
    ("entry", "detail"),
    [
        (
            {"metadata": "x"},
            "cannot unmarshal string into Go struct field bulkPublishMessageEntry.metadata of type map[string]string",
        ),
        (
            {"metadata": {"a": 1}},
            "cannot unmarshal number into Go struct field bulkPublishMessageEntry.metadata of type string",
        ),
        ({"entryId": 5}, "cannot unmarshal number into Go struct field bulkPublishMessageEntry.entryId of type string"),
        (
            {"contentType": []},
            "cannot unmarshal array into Go struct field bulkPublishMessageEntry.contentType of type string",
        ),
    ],
)
async def test_bulk_publish_entry_of_the_wrong_shape_is_400(
    sidecar: Sidecar, entry: dict[str, Any], detail: str
) -> None:
    published = capture_publishes(sidecar)
    good = {"entryId": "1", "event": "x", "contentType": "text/plain"}
    body = orjson.dumps([good, {**good, "entryId": "2", **entry}])
    response = await sidecar.client.post("/v1.0-alpha1/publish/bulk/pubsub/orders", content=body)
    assert response.status_code == 400
    error = response.json()
    assert error["errorCode"] == "ERR_PUBSUB_EVENTS_SER"
    assert error["message"] == f"error when unmarshaling the request for topic orders pubsub pubsub: json: {detail}"
    assert error["details"][0]["reason"] == "DAPR_PUBSUB_UNMARSHAL_EVENTS"
    assert published == []


@pytest.mark.parametrize(
    ("app_id", "target", "problem"),
    [
        ("http%3A%2F%2F%5B%3A%3A1", "http://[::1", "missing ']' in host"),
        ("http%3A%2F%2Fhost%3Aabc", "http://host:abc", 'invalid port \\":abc\\" after host'),
        ("http%3A%2F%2F%5B%3A%3A1%5Dzz", "http://[::1]zz", 'invalid port \\"zz\\" after host'),
    ],
)
async def test_invoking_an_unparsable_url_is_err_direct_invoke(
    sidecar: Sidecar, app_id: str, target: str, problem: str
) -> None:
    response = await sidecar.client.get(f"/v1.0/invoke/{app_id}/method/m")
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": f'failed to invoke, id: {target}, err: parse "{target}": {problem}'.replace("\\", ""),
    }


def test_an_unexpected_exception_is_a_logged_bug_answered_with_error(caplog: pytest.LogCaptureFixture) -> None:
    """Not reachable by client input (the tests above): what happens when the code itself is wrong."""
    try:
        raise KeyError("boom")
    except KeyError as exc:
        with caplog.at_level(logging.ERROR, logger="app.errors"):
            response = render_error(exc, "myapp")
    assert response.status_code == 500
    assert orjson.loads(bytes(response.body)) == {"errorCode": "ERROR", "message": "'boom'"}
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and "BUG" in record.getMessage() and record.exc_info is not None
