"""Hostile request paths on a real sidecar process: raw bytes on the socket, no client-side normalising.

Routes match the still-encoded path and each parameter is unescaped once (daprd's rule), so no request can
address another store, another key than the one it names, or the sidecar's own API through an invocation.
"""

from __future__ import annotations

import http.client
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy
from tests.services import POSTGRES_DSN, require_postgres, require_redis
from tests.sidecar import component_yaml

ECHO = Path(__file__).parent / "apps" / "echo.py"
STORES = ["state.sqlite", "state.redis", "state.postgresql"]


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str


@dataclass
class Sidecar:
    port: int
    app_id: str

    def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        """``path`` goes on the wire exactly as given."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            connection.putheader("content-length", str(len(body or b"")))
            connection.endheaders(body or b"")
            response = connection.getresponse()
            return Answer(response.status, response.read(), response.getheader("content-type") or "")
        finally:
            connection.close()

    def save(self, store: str, key: str, value: object) -> None:
        body = orjson.dumps([{"key": key, "value": value}])
        assert self.request("POST", f"/v1.0/state/{store}", body).status == 204

    def get(self, store: str, key: str) -> bytes | None:
        answer = self.request("POST", f"/v1.0/state/{store}/bulk", orjson.dumps({"keys": [key]}))
        assert answer.status == 200, answer
        item = orjson.loads(answer.body)[0]
        return orjson.dumps(item["data"]) if "data" in item else None


def _metadata(component: str, tmp_path: Path) -> dict[str, str]:
    prefix = {"keyPrefix": "none"}
    if component == "state.sqlite":
        return {"connectionString": str(tmp_path / "state.db"), **prefix}
    if component == "state.redis":
        return {"redisHost": require_redis(), **prefix}
    require_postgres()
    return {"connectionString": POSTGRES_DSN, "tableName": f"paths_{uuid.uuid4().hex[:8]}", **prefix}


@pytest.fixture(scope="module", params=STORES)
def sidecar(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """``statestore`` on the store under test, ``memstore`` (in-memory) beside it, and an echo app."""
    tmp_path = tmp_path_factory.mktemp("paths")
    (tmp_path / "statestore.yaml").write_text(
        component_yaml("statestore", request.param, _metadata(request.param, tmp_path))
    )
    (tmp_path / "memstore.yaml").write_text(component_yaml("memstore", "state.in-memory"))
    port, app_port, app_id = free_port(), free_port(), f"paths-{uuid.uuid4().hex[:8]}"
    flags = ["--app-id", app_id, "--dapr-http-port", str(port), "--app-port", str(app_port)]
    process = layotto(
        *flags, "--resources-path", str(tmp_path), "--", sys.executable, str(ECHO), env={"HOME": str(tmp_path)}
    )
    try:
        wait_healthy(port, timeout=60)
        yield Sidecar(port, app_id)
    finally:
        stop(process)


def test_an_encoded_slash_never_reaches_another_store_or_key(sidecar: Sidecar) -> None:
    sidecar.save("memstore", "victim", {"kept": True})
    sidecar.save("statestore", "a/b", "plain")
    hostile = [
        "/v1.0/state/statestore/z%2F..%2F..%2Fmemstore%2Fvictim",
        "/v1.0/state/statestore/%2e%2e/memstore/victim",
        "/v1.0/state/statestore/a%2F%2Fb",
        "/v1.0/state/statestore/a%2F.%2Fb",
        "/v1.0/state/statestore/a%2Fb%2F",
    ]
    for path in hostile:
        assert sidecar.request("DELETE", path).status == 204, path
        assert sidecar.request("GET", path).status == 204, path  # nothing under that exact key
    assert sidecar.get("memstore", "victim") == b'{"kept":true}'
    assert sidecar.get("statestore", "a/b") == b'"plain"'
    # The store segment: an encoded slash is part of the store's name, which does not exist.
    answer = sidecar.request("DELETE", "/v1.0/state/statestore%2F..%2Fmemstore/victim")
    assert answer.status == 400 and orjson.loads(answer.body)["errorCode"] == "ERR_STATE_STORE_NOT_FOUND"
    assert b"statestore/../memstore" in answer.body
    assert sidecar.get("memstore", "victim") == b'{"kept":true}'


def test_keys_with_separators_and_dots_are_reachable_by_their_encoded_name(sidecar: Sidecar) -> None:
    keys = {"a//b": "a%2F%2Fb", "a/./b": "a%2F.%2Fb", "a/../b": "a%2F..%2Fb", "dir/": "dir%2F", "../up": "..%2Fup"}
    for index, (key, encoded) in enumerate(keys.items()):
        sidecar.save("statestore", key, index)
        got = sidecar.request("GET", f"/v1.0/state/statestore/{encoded}")
        assert (got.status, got.body) == (200, str(index).encode()), key
    for index, (key, encoded) in enumerate(keys.items()):
        assert sidecar.request("DELETE", f"/v1.0/state/statestore/{encoded}").status == 204
        assert sidecar.get("statestore", key) is None, (key, index)
    assert sidecar.get("statestore", "b") is None and sidecar.get("statestore", "up") is None


def test_escapes_that_are_not_utf8_are_refused_not_merged(sidecar: Sidecar) -> None:
    sidecar.save("statestore", "x-\ufffd", "replacement char")
    for path in ("/v1.0/state/statestore/x-%c0", "/v1.0/state/statestore/x-%ff", "/v1.0/state/statestore%ff/k"):
        for method in ("GET", "DELETE"):
            answer = sidecar.request(method, path)
            assert answer.status == 400, (method, path, answer)
            assert orjson.loads(answer.body)["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert sidecar.get("statestore", "x-\ufffd") == b'"replacement char"'
    # An escape that is not one at all: Go's plain-text answer, as daprd's parameter unescaping gives.
    answer = sidecar.request("GET", "/v1.0/state/statestore/k%zz")
    assert (answer.status, answer.content_type) == (400, "text/plain; charset=utf-8")
    assert answer.body == b'invalid URL escape "%zz"\n'


def test_raw_dot_segments_are_cleaned_as_daprd_does(sidecar: Sidecar) -> None:
    """Cleaning applies to the raw path: a client that writes ``..`` itself names what it names."""
    sidecar.save("memstore", "k", "in memstore")
    got = sidecar.request("GET", "/v1.0/state/statestore/../memstore/k")
    assert (got.status, got.body) == (200, b'"in memstore"')
    got = sidecar.request("GET", "//v1.0//state/memstore/./k/")
    assert (got.status, got.body) == (200, b'"in memstore"')


def test_an_invoked_method_cannot_climb_into_the_sidecars_own_api(sidecar: Sidecar) -> None:
    sidecar.save("memstore", "v", "secret")
    escape = "..%2F..%2F..%2F..%2Fv1.0%2Fstate%2Fmemstore%2Fv"
    for method in ("GET", "DELETE"):
        answer = sidecar.request(method, f"/v1.0/invoke/{sidecar.app_id}/method/{escape}")
        assert answer.status == 200, answer
        seen = orjson.loads(answer.body)  # the echo app answered: the call reached the app
        assert (seen["method"], seen["path"]) == (method, "/v1.0/state/memstore/v")
    # The header form takes the whole path as the method: also the app's, never the sidecar's.
    connection = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=30)
    connection.request("DELETE", "/x/..%2F..%2Fv1.0%2Fstate%2Fmemstore%2Fv", headers={"dapr-app-id": sidecar.app_id})
    response = connection.getresponse()
    assert response.status == 200 and orjson.loads(response.read())["path"] == "/v1.0/state/memstore/v"
    connection.close()
    assert sidecar.get("memstore", "v") == b'"secret"'


def test_encoded_topic_and_app_id_are_one_parameter_each(sidecar: Sidecar) -> None:
    """``http%3A%2F%2F…`` names a URL target (daprd's documented form); a topic keeps its encoded slash."""
    answer = sidecar.request("GET", f"/v1.0/invoke/http%3A%2F%2F127.0.0.1%3A{sidecar.port}/method/v1.0%2Fhealthz")
    assert answer.status == 204, answer  # the URL target was this sidecar's own health endpoint
    answer = sidecar.request("GET", "/v1.0/invoke/http%3A%2F%2F%5B%3A%3A1/method/x")
    assert answer.status == 500 and orjson.loads(answer.body)["errorCode"] == "ERR_DIRECT_INVOKE", answer
