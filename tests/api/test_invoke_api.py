"""Service invocation's wire contract (conformance I-1...I-11): a sidecar in-process, a real HTTP app behind it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from tests.e2e.apps.echo import EchoApp
from tests.sidecar import Sidecar, component_yaml, running_sidecar
from tests.subscriber_app import free_port

NO_APP_ID = {
    "errorCode": "ERR_DIRECT_INVOKE",
    "message": "failed getting app id either from the URL path or the header dapr-app-id",
}
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


@contextlib.asynccontextmanager
async def serving(app: EchoApp) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


def resources(tmp_path: Path, extra: str = "") -> Path:
    """A resources folder whose name resolver keeps its file in the test's folder."""
    folder = tmp_path / "resources"
    folder.mkdir(exist_ok=True)
    (folder / "config.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: config}\nspec:\n"
        f"  nameResolution:\n    component: sqlite\n    configuration: {{connectionString: '{tmp_path / 'nr.db'}'}}\n"
    )
    if extra:
        (folder / "extra.yaml").write_text(extra)
    return folder


@pytest.fixture
async def app() -> AsyncIterator[tuple[EchoApp, int]]:
    echo = EchoApp("one")
    async with serving(echo) as port:
        yield echo, port


@pytest.fixture
async def sidecar(tmp_path: Path, app: tuple[EchoApp, int]) -> AsyncIterator[Sidecar]:
    async with running_sidecar(resources(tmp_path), app_id="myapp", app_port=app[1]) as running:
        yield running


def headers_of(answer: httpx.Response) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in answer.json()["headers"]:
        seen.setdefault(name, []).append(value)
    return seen


@pytest.mark.parametrize(
    ("verb", "status"), [("GET", 200), ("POST", 201), ("PUT", 202), ("DELETE", 409), ("PATCH", 502)]
)
@pytest.mark.parametrize(
    "form",
    ["/v1.0/invoke/myapp/method/status/{status}", "//v1.0////invoke/myapp/method/status/{status}", "header"],
)
async def test_verbs_statuses_and_bodies_pass_through(sidecar: Sidecar, verb: str, status: int, form: str) -> None:
    if form == "header":
        answer = await sidecar.client.request(verb, f"///status/{status}", headers={"dapr-app-id": "myapp"})
    else:
        answer = await sidecar.client.request(verb, "http://sidecar" + form.format(status=status))
    assert answer.status_code == status
    assert answer.content == verb.encode()
    assert answer.headers["content-type"] == "text/plain"
    assert "dapr-app-id" not in answer.headers


async def test_basic_auth_form(sidecar: Sidecar) -> None:
    auth = base64.b64encode(b"dapr-app-id:myapp").decode()
    answer = await sidecar.client.get("/status/202", headers={"authorization": f"Basic {auth}"})
    assert answer.status_code == 202


async def test_body_query_and_headers_reach_the_app(sidecar: Sidecar) -> None:
    answer = await sidecar.client.post(
        "/v1.0/invoke/myapp/method/multiple/segments?a=1&b=x%20y&a=2",
        content=b"hello",
        headers={"foo": "bar", "content-type": "text/plain", "dapr-caller-app-id": "spoofed", "dapr-app-id": ""},
    )
    assert answer.status_code == 200
    seen = answer.json()
    assert (seen["method"], seen["path"], seen["query"], seen["body"]) == (
        "POST",
        "/multiple/segments",
        "a=1&b=x%20y&a=2",
        "hello",
    )
    headers = headers_of(answer)
    assert headers["foo"] == ["bar"]
    assert headers["content-type"] == ["text/plain"]
    assert headers["content-length"] == ["5"]
    assert headers["dapr-caller-app-id"] == ["myapp"]  # overwritten, even on self-invocation
    assert headers["dapr-callee-app-id"] == ["myapp"]
    assert headers["dapr-caller-namespace"] == ["default"]
    assert TRACEPARENT.match(headers["traceparent"][0])
    assert "dapr-app-id" not in headers


async def test_no_content_type_is_added_and_traceparent_is_propagated(sidecar: Sidecar) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    answer = await sidecar.client.post("/v1.0/invoke/myapp/method/echo", content=b"x", headers={"traceparent": parent})
    headers = headers_of(answer)
    assert "content-type" not in headers
    assert headers["traceparent"] == [parent]


async def test_hop_by_hop_headers_are_dropped_both_ways(sidecar: Sidecar) -> None:
    answer = await sidecar.client.get(
        "/v1.0/invoke/myapp/method/echo",
        headers=[
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic eA=="),
            ("te", "trailers"),
            ("trailer", "x"),
            ("upgrade", "h2c"),
            ("x-custom", "kept"),
            ("daprtest-multi", "M'illumino"),
            ("daprtest-multi", "d'immenso"),
        ],
    )
    headers = headers_of(answer)
    for name in ("connection", "x-private", "keep-alive", "proxy-authorization", "te", "trailer", "upgrade"):
        assert name not in headers, name
    assert headers["x-custom"] == ["kept"]
    assert headers["daprtest-multi"] == ["M'illumino", "d'immenso"]

    out = await sidecar.client.get("/v1.0/invoke/myapp/method/headers-out")
    assert out.status_code == 200 and out.content == b"headers"
    assert out.headers.get_list("x-multi") == ["a", "b"]
    assert out.headers["x-method"] == "GET"
    assert out.headers["set-cookie"] == "a=1"
    assert "keep-alive" not in out.headers and "proxy-authenticate" not in out.headers


async def test_methods_are_decoded_and_cleaned(sidecar: Sidecar) -> None:
    assert (await sidecar.client.get("/v1.0/invoke/myapp/method/admin%2F..%2Fpublic")).json()["path"] == "/public"
    assert (await sidecar.client.get("/v1.0/invoke/myapp/method/test%22stream")).json()["path"] == '/test"stream'
    query = await sidecar.client.get("/v1.0/invoke/myapp/method/test?stream")
    assert (query.json()["path"], query.json()["query"]) == ("/test", "stream")
    for bad in ("test%23stream", "test%3Fstream", "test%25stream", "test%00stream", "test%0Dstream"):
        answer = await sidecar.client.get(f"/v1.0/invoke/myapp/method/{bad}")
        assert answer.status_code == 500, bad
        assert answer.json()["errorCode"] == "ERR_DIRECT_INVOKE"
    answer = await sidecar.client.get("/v1.0/invoke/myapp/method/test%23stream")
    assert answer.json()["message"] == (
        "failed to invoke, id: myapp, err: rpc error: code = InvalidArgument desc = invalid method: "
        'method contains forbidden character: "test#stream"'
    )


async def test_no_app_id_is_404(sidecar: Sidecar) -> None:
    for path in ("/v1.0/invoke/myapp", "/v1.0/invoke/myapp/method", "/status/200"):
        answer = await sidecar.client.get(path)
        assert answer.status_code == 404
        assert answer.json() == NO_APP_ID


async def test_app_errors_pass_through(sidecar: Sidecar) -> None:
    missing = await sidecar.client.get("/v1.0/invoke/myapp/method/status/404")
    assert (missing.status_code, missing.content) == (404, b"GET")
    failed = await sidecar.client.post("/v1.0/invoke/myapp/method/status/500")
    assert (failed.status_code, failed.content, failed.headers["content-length"]) == (500, b"POST", "4")


async def test_redirects_are_not_followed(sidecar: Sidecar) -> None:
    answer = await sidecar.client.get("/v1.0/invoke/myapp/method/redirect")
    assert (answer.status_code, answer.headers["location"], answer.content) == (307, "/echo", b"moved")


async def test_unknown_and_invalid_app_ids(sidecar: Sidecar) -> None:
    unknown = await sidecar.client.get("/v1.0/invoke/nope/method/x")
    assert unknown.status_code == 500
    assert unknown.headers["content-type"] == "application/json"
    assert unknown.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: nope, err: no host found with the given ID",
    }
    invalid = await sidecar.client.get("/v1.0/invoke/a.b.c/method/x")
    assert invalid.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: a.b.c, err: invalid app id a.b.c",
    }
    namespaced = await sidecar.client.get("/v1.0/invoke/myapp.default/method/status/201")
    assert namespaced.status_code == 201


async def test_unreachable_app(tmp_path: Path) -> None:
    port = free_port()
    async with running_sidecar(resources(tmp_path), app_id="myapp", app_port=port) as sidecar:
        answer = await sidecar.client.get("/v1.0/invoke/myapp/method/x?y=1")
    assert answer.status_code == 500
    assert answer.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": f'failed to invoke, id: myapp, err: Get "http://127.0.0.1:{port}/x?y=1": '
        f"dial tcp 127.0.0.1:{port}: connect: connection refused",
    }


async def test_no_app_channel(tmp_path: Path) -> None:
    async with running_sidecar(resources(tmp_path), app_id="myapp") as sidecar:
        answer = await sidecar.client.get("/v1.0/invoke/myapp/method/x")
    assert answer.json()["message"] == (
        "failed to invoke, id: myapp, err: cannot invoke local endpoint: app channel not initialized"
    )


async def test_body_limit(tmp_path: Path, app: tuple[EchoApp, int]) -> None:
    async with running_sidecar(resources(tmp_path), app_id="myapp", app_port=app[1], max_body_size=1000) as sidecar:
        ok = await sidecar.client.post("/v1.0/invoke/myapp/method/sink", content=b"x" * 1000)
        assert ok.json()["bytes"] == 1000
        too_large = await sidecar.client.post("/v1.0/invoke/myapp/method/sink", content=b"x" * 1001)
        assert too_large.status_code == 413
        assert too_large.json() == {
            "errorCode": "ERR_BODY_READ",
            "message": "request body exceeds the limit of 1000 bytes",
        }

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"y" * 600

        chunked = await sidecar.client.post("/v1.0/invoke/myapp/method/sink", content=chunks())
        assert chunked.status_code == 413


async def test_bodies_stream_through(tmp_path: Path, app: tuple[EchoApp, int]) -> None:
    size = 12 << 20
    async with running_sidecar(resources(tmp_path), app_id="myapp", app_port=app[1], max_body_size=32 << 20) as sidecar:
        up = await sidecar.client.put("/v1.0/invoke/myapp/method/sink", content=b"z" * size)
        assert up.json()["bytes"] == size
        down = await sidecar.client.get(f"/v1.0/invoke/myapp/method/source?bytes={size}")
        assert len(down.content) == size and "content-length" not in down.headers


async def test_api_tokens(tmp_path: Path, app: tuple[EchoApp, int]) -> None:
    async with running_sidecar(
        resources(tmp_path), app_id="myapp", app_port=app[1], api_token="dapr-secret", app_api_token="app-secret"
    ) as sidecar:
        assert (await sidecar.client.get("/v1.0/invoke/myapp/method/echo")).status_code == 401
        answer = await sidecar.client.get("/v1.0/invoke/myapp/method/echo", headers={"dapr-api-token": "dapr-secret"})
    assert headers_of(answer)["dapr-api-token"] == ["app-secret"]


ENDPOINTS = """\
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {{name: echo-endpoint}}
spec:
  baseUrl: http://127.0.0.1:{port}/base
  headers:
    - {{name: x-fixed, value: fixed}}
    - {{name: authorization, secretKeyRef: {{name: token, key: token}}}}
auth: {{secretStore: secrets}}
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {{name: elsewhere}}
spec: {{baseUrl: http://127.0.0.1:{port}}}
scopes: [another-app]
"""


async def test_http_endpoints_and_urls(tmp_path: Path, app: tuple[EchoApp, int]) -> None:
    port = app[1]
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"token": "Bearer t0k3n"}))
    folder = resources(tmp_path, ENDPOINTS.format(port=port))
    (folder / "secrets.yaml").write_text(
        component_yaml("secrets", "secretstores.local.file", {"secretsFile": str(secrets)})
    )
    async with running_sidecar(folder, app_id="myapp") as sidecar:
        answer = await sidecar.client.post(
            "/v1.0/invoke/echo-endpoint/method/users/x?q=1",
            content=b"data",
            headers={"x-fixed": "caller", "x-other": "caller"},
        )
        assert answer.status_code == 200
        seen = answer.json()
        assert (seen["path"], seen["query"], seen["body"]) == ("/base/users/x", "q=1", "data")
        headers = headers_of(answer)
        assert headers["x-fixed"] == ["fixed"]
        assert headers["authorization"] == ["Bearer t0k3n"]
        assert headers["x-other"] == ["caller"]
        assert "dapr-caller-app-id" not in headers

        url = await sidecar.client.get(f"/v1.0/invoke/http%3A%2F%2F127.0.0.1%3A{port}/method/status/203")
        assert url.status_code == 203
        followed = await sidecar.client.get(f"/v1.0/invoke/http://127.0.0.1:{port}/method/redirect")
        assert followed.json()["path"] == "/echo"  # external targets follow redirects, as daprd does
        out_of_scope = await sidecar.client.get("/v1.0/invoke/elsewhere/method/x")
        assert out_of_scope.json()["message"] == "failed to invoke, id: elsewhere, err: no host found with the given ID"
        closed = free_port()
        unreachable = await sidecar.client.post(f"/v1.0/invoke/http://127.0.0.1:{closed}/method/x")
        assert unreachable.status_code == 500
        assert unreachable.json() == {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": f"failed to invoke, id: http://127.0.0.1:{closed}, err: "
            f'Post "http://127.0.0.1:{closed}/x": dial tcp 127.0.0.1:{closed}: connect: connection refused',
        }


def test_httpx_is_imported_only_when_an_external_target_is_invoked() -> None:
    # httpx (with rich, pygments and h2) costs the sidecar ~5 MB and ~0.1 s of start-up it rarely needs.
    code = "import sys, app.cli; assert 'httpx' not in sys.modules, 'httpx imported at start-up'"
    subprocess.run([sys.executable, "-c", code], check=True)


RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {{name: invoke}}
spec:
  policies:
    timeouts:
      short: 300ms
    retries:
      quick:
        policy: constant
        duration: 10ms
        maxRetries: 2
        matching: {{httpStatusCodes: "503"}}
    circuitBreakers:
      twice:
        trip: consecutiveFailures > 1
        timeout: 1s
  targets:
    apps:
      myapp: {{retry: quick}}
      slow: {{timeout: short}}
      fragile: {{circuitBreaker: twice}}
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {{name: slow}}
spec: {{baseUrl: http://127.0.0.1:{port}}}
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {{name: fragile}}
spec: {{baseUrl: http://127.0.0.1:{port}}}
"""


async def test_retries_follow_the_policy(tmp_path: Path, app: tuple[EchoApp, int]) -> None:
    echo, port = app
    async with running_sidecar(resources(tmp_path, RESILIENCY.format(port=port)), app_id="myapp", app_port=port) as s:
        recovered = await s.client.post("/v1.0/invoke/myapp/method/flaky/a?fail=2", content=b"body")
        assert (recovered.status_code, recovered.content) == (200, b"attempt 3")
        exhausted = await s.client.post("/v1.0/invoke/myapp/method/flaky/b?fail=9", content=b"body")
        assert (exhausted.status_code, exhausted.content) == (503, b"failed")
        assert echo.calls["b"] == 3  # 1 + maxRetries
        not_matching = await s.client.get("/v1.0/invoke/myapp/method/flaky/c?fail=9&code=500")
        assert not_matching.status_code == 500
        assert echo.calls["c"] == 1


async def test_timeouts_and_circuit_breakers(tmp_path: Path, app: tuple[EchoApp, int]) -> None:
    echo, port = app
    async with running_sidecar(resources(tmp_path, RESILIENCY.format(port=port)), app_id="myapp") as s:
        started = time.monotonic()
        slow = await s.client.get("/v1.0/invoke/slow/method/slow?ms=3000")
        assert time.monotonic() - started < 2
        assert slow.json() == {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": "failed to invoke, id: slow, err: context deadline exceeded",
        }
        assert (await s.client.get("/v1.0/invoke/slow/method/slow?ms=10")).status_code == 200

        for _ in range(2):
            assert (await s.client.get("/v1.0/invoke/fragile/method/flaky/cb?fail=2&code=500")).status_code == 500
        tripped = await s.client.get("/v1.0/invoke/fragile/method/flaky/cb?fail=2&code=500")
        assert tripped.json() == {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": "failed to invoke, id: fragile, err: circuit breaker is open",
        }
        assert echo.calls["cb"] == 2  # the open breaker did not call the app
        await asyncio.sleep(1.1)
        half_open = await s.client.get("/v1.0/invoke/fragile/method/flaky/cb?fail=2&code=500")
        assert (half_open.status_code, half_open.content) == (200, b"attempt 3")
        assert (await s.client.get("/v1.0/invoke/fragile/method/status/200")).status_code == 200


HEALTH_SPECS = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: orders}
spec: {pubsubname: pubsub, topic: orders, routes: {default: /orders}}
"""


async def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_unhealthy_app_fails_invocations_and_pauses_subscriptions(
    tmp_path: Path, app: tuple[EchoApp, int]
) -> None:
    echo, port = app
    folder = resources(tmp_path, HEALTH_SPECS)
    (folder / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.in-memory"))
    async with running_sidecar(
        folder,
        app_id="myapp",
        app_port=port,
        enable_app_health_check=True,
        app_health_probe_interval=0.05,
        app_health_threshold=2,
    ) as sidecar:
        runtime = sidecar.runtime
        assert runtime.app_health is not None
        await wait_until(lambda: len(runtime.pubsub.active) == 1)
        assert (await sidecar.client.get("/v1.0/invoke/myapp/method/status/200")).status_code == 200

        echo.healthy = False
        await wait_until(lambda: runtime.app_health is not None and not runtime.app_health.healthy)
        answer = await sidecar.client.get("/v1.0/invoke/myapp/method/status/200")
        assert answer.status_code == 500
        assert answer.json()["message"] == (
            "failed to invoke, id: myapp, err: rpc error: code = Internal desc = app is not in a healthy state"
        )
        assert runtime.pubsub.active == ()

        echo.healthy = True
        await wait_until(lambda: len(runtime.pubsub.active) == 1)
        assert (await sidecar.client.get("/v1.0/invoke/myapp/method/status/200")).status_code == 200
        published = await sidecar.client.post("/v1.0/publish/pubsub/orders", json={"n": 1})
        assert published.status_code == 204
        await wait_until(lambda: any(r["path"] == "/orders" for r in echo.requests))
        delivered = next(r for r in echo.requests if r["path"] == "/orders")
        assert orjson.loads(delivered["body"])["data"] == {"n": 1}
