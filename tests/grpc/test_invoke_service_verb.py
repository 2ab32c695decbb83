"""``InvokeService`` without an ``http_extension``, or with verb NONE, as daprd handles it: a gRPC app gets the
request as it was sent (no extension / verb NONE with its query string), through its own sidecar and across
two; an HTTP app's channel refuses it (InvalidArgument, wrapped in ERR_DIRECT_INVOKE: INTERNAL)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, invoke_pb2
from google.protobuf import any_pb2

from tests.api.test_invoke_api import serving
from tests.e2e.apps.echo import EchoApp
from tests.e2e.test_cli import free_port
from tests.grpc.apps.streams_app import serve
from tests.grpc.harness import GrpcSidecar, grpc_sidecar
from tests.sidecar import running_sidecar

_VERB = common_pb2.HTTPExtension.Verb
TIMEOUT = 60


def request(target: str, extension: common_pb2.HTTPExtension | None) -> invoke_pb2.InvokeServiceRequest:
    message = common_pb2.InvokeRequest(method="seen", data=any_pb2.Any(value=b"body"), content_type="text/plain")
    if extension is not None:
        message.http_extension.CopyFrom(extension)
    return invoke_pb2.InvokeServiceRequest(id=target, message=message)


async def invoke(address: str, target: str, extension: common_pb2.HTTPExtension | None) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(address) as channel:
        answer = await dapr_pb2_grpc.DaprStub(channel).InvokeService(request(target, extension), timeout=TIMEOUT)
    seen: dict[str, Any] = json.loads(answer.data.value)
    return seen


async def seen_by_grpc_app(address: str, target: str) -> None:
    absent = await invoke(address, target, None)
    assert (absent["has_extension"], absent["method"], absent["data"]) == (False, "seen", "body")
    none = await invoke(address, target, common_pb2.HTTPExtension(verb=_VERB.NONE, querystring="a=1&b=2"))
    assert (none["has_extension"], none["verb"], none["querystring"]) == (True, "NONE", "a=1&b=2")
    get = await invoke(address, target, common_pb2.HTTPExtension(verb=_VERB.GET, querystring="q=1"))
    assert (get["verb"], get["querystring"]) == ("GET", "q=1")
    for seen in (absent, none, get):  # the marker is the sidecars' own
        assert "layotto-http-extension" not in [key for key, _ in seen["metadata"]]


@pytest.fixture
async def grpc_app(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    server = await serve(port)
    try:
        async with running_sidecar(tmp_path, app_id="rpc", grpc=True, app_port=port, app_protocol="grpc") as sidecar:
            yield f"127.0.0.1:{sidecar.grpc_port}"
    finally:
        await server.stop(None)


async def test_a_grpc_app_gets_the_request_as_sent(grpc_app: str) -> None:
    await seen_by_grpc_app(grpc_app, "rpc")


async def test_a_client_cannot_send_the_marker(grpc_app: str) -> None:
    async with grpc.aio.insecure_channel(grpc_app) as channel:
        extension = common_pb2.HTTPExtension(verb=_VERB.PUT)
        answer = await dapr_pb2_grpc.DaprStub(channel).InvokeService(
            request("rpc", extension), metadata=(("layotto-http-extension", "absent"),), timeout=TIMEOUT
        )
    seen = json.loads(answer.data.value)
    assert (seen["has_extension"], seen["verb"]) == (True, "PUT")


@pytest.mark.parametrize(
    ("extension", "refusal"),
    [(None, "missing HTTP extension field"), (common_pb2.HTTPExtension(verb=_VERB.NONE), "invalid HTTP verb")],
)
async def test_an_http_app_refuses_it(tmp_path: Path, extension: common_pb2.HTTPExtension | None, refusal: str) -> None:
    echo = EchoApp("one")
    async with (
        serving(echo) as port,
        running_sidecar(tmp_path, app_id="web", grpc=True, app_port=port) as sidecar,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await invoke(f"127.0.0.1:{sidecar.grpc_port}", "web", extension)
        assert refused.value.code() == grpc.StatusCode.INTERNAL
        assert refused.value.details() == (
            f"failed to invoke, id: web, err: rpc error: code = InvalidArgument desc = {refusal}"
        )


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcSidecar]:
    """A sidecar with no app, and the gRPC app's sidecar it calls; yields the caller."""
    home = tmp_path_factory.mktemp("verbs")
    app = [sys.executable, "-m", "tests.grpc.apps.streams_app"]
    with (
        grpc_sidecar(home, "--app-port", str(free_port()), env={"APP_PROTOCOL": "grpc"}, app_id="rpc2", command=app),
        grpc_sidecar(home, app_id="caller2") as caller,
    ):
        yield caller


async def test_across_the_hop_a_grpc_app_gets_the_request_as_sent(pair: GrpcSidecar) -> None:
    await seen_by_grpc_app(pair.grpc_address, "rpc2")


async def test_a_url_target_gets_a_plain_post(tmp_path: Path) -> None:
    """An HTTP service named by URL is no app: no marker of the sidecars' reaches it."""
    echo = EchoApp("one")
    async with serving(echo) as port, running_sidecar(tmp_path, app_id="caller3", grpc=True) as sidecar:
        seen = await invoke(f"127.0.0.1:{sidecar.grpc_port}", f"http://127.0.0.1:{port}", None)
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/seen", "body")
    assert "layotto-http-extension" not in [name for name, _ in seen["headers"]]


@pytest.fixture(scope="module")
def http_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcSidecar]:
    """A sidecar with no app, and the sidecar of an HTTP app it calls; yields the caller."""
    home = tmp_path_factory.mktemp("verbs-http")
    port = free_port()
    app = [sys.executable, "-m", "tests.e2e.apps.echo"]
    with (
        grpc_sidecar(home, "--app-port", str(port), env={"PORT": str(port)}, app_id="web4", command=app),
        grpc_sidecar(home, app_id="caller4") as caller,
    ):
        yield caller


@pytest.mark.parametrize(
    ("extension", "refusal"),
    [(None, "missing HTTP extension field"), (common_pb2.HTTPExtension(verb=_VERB.NONE), "invalid HTTP verb")],
)
async def test_across_the_hop_an_http_app_refuses_it(
    http_pair: GrpcSidecar, extension: common_pb2.HTTPExtension | None, refusal: str
) -> None:
    """The callee's HTTP channel refuses what has no verb, as daprd's does; a call with one still goes through."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await invoke(http_pair.grpc_address, "web4", extension)
    assert refused.value.code() == grpc.StatusCode.INTERNAL
    assert refused.value.details() == (
        f"failed to invoke, id: web4, err: rpc error: code = InvalidArgument desc = {refusal}"
    )
    seen = await invoke(http_pair.grpc_address, "web4", common_pb2.HTTPExtension(verb=_VERB.PUT))
    assert (seen["method"], seen["path"], seen["body"]) == ("PUT", "/seen", "body")
