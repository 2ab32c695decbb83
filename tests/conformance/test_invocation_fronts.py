"""Service invocation through both fronts: what is not HTTP-specific holds for ``/v1.0/invoke`` and for
``InvokeService`` alike, against a sidecar in-process and a real HTTP app behind it.

The verb and the query string reach the app; the body and its content type go there and back; the app's
non-2xx status comes back (over gRPC as daprd: the code of ``CodeFromHTTPStatus``, the status text, and the
status in ``dapr-http-status`` metadata); an unknown app id is ERR_DIRECT_INVOKE; the caller identity the app
sees is set by the sidecar whatever the client sent; the API token is required and never passed on.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import invoke_pb2
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from tests.api.test_invoke_api import resources, serving
from tests.e2e.apps.echo import EchoApp
from tests.grpc.fronts import FRONTS, GrpcFront, grpc_front
from tests.sidecar import Sidecar, running_sidecar

pytestmark = pytest.mark.parametrize("front", FRONTS)
#: The resolver every case runs on (``tests.api.test_invoke_api.resources``); the resolvers themselves are
#: ``test_invocation``'s and ``test_nameresolution``'s.
COMPONENT_TYPES = frozenset({"nameresolution.sqlite"})
APP = "myapp"
#: Go's ``http.StatusText`` where it differs from Python's phrase (daprd's message is Go's).
GO_TEXT = {418: "I'm a teapot"}


@dataclass
class Answer:
    """An invocation's outcome in front-neutral terms: the app's HTTP status (gRPC: ``dapr-http-status``, or the
    status a sidecar error stands for), the body, its content type; the gRPC code and the error's message."""

    status: int
    body: bytes
    content_type: str
    code: grpc.StatusCode | None = None
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Invoker:
    sidecar: Sidecar
    grpc: GrpcFront | None

    async def invoke(
        self,
        method: str,
        verb: str = "POST",
        query: str = "",
        body: bytes = b"",
        content_type: str = "",
        headers: tuple[tuple[str, str], ...] = (),
        target: str = APP,
    ) -> Answer:
        if self.grpc is None:
            sent = dict(headers) | ({"content-type": content_type} if content_type else {})
            path = f"/v1.0/invoke/{target}/method/{method}" + (f"?{query}" if query else "")
            response = await self.sidecar.client.request(verb, path, content=body, headers=sent)
            json_error = response.status_code >= 400 and response.headers.get("content-type") == "application/json"
            error = response.json().get("message", "") if json_error else ""
            return Answer(response.status_code, response.content, response.headers.get("content-type", ""), error=error)
        extension = common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.Verb.Value(verb), querystring=query)
        message = common_pb2.InvokeRequest(
            method=method, data=any_pb2.Any(value=body), content_type=content_type, http_extension=extension
        )
        call = self.grpc.dapr.InvokeService(
            invoke_pb2.InvokeServiceRequest(id=target, message=message), metadata=headers
        )
        try:
            answer = await call
        except grpc.aio.AioRpcError as exc:
            return Answer(_http_status(exc), b"", "", exc.code(), exc.details() or "")
        status = dict(await call.initial_metadata())["dapr-http-status"]
        return Answer(int(status), answer.data.value, answer.content_type, grpc.StatusCode.OK)


def _http_status(exc: grpc.aio.AioRpcError) -> int:
    """The HTTP status of a failed call: ``dapr-http-status`` (the app answered), else its ErrorInfo's
    ``http.code``, else 0 (a sidecar error with no details, as daprd's ERR_DIRECT_INVOKE)."""
    status = dict(exc.initial_metadata() or ()).get("dapr-http-status")
    if isinstance(status, str):
        return int(status)
    details = dict(exc.trailing_metadata() or ()).get("grpc-status-details-bin")
    if not isinstance(details, bytes):
        return 0
    info = error_details_pb2.ErrorInfo()
    assert status_pb2.Status.FromString(details).details[0].Unpack(info)
    return int(info.metadata["http.code"])


@contextlib.asynccontextmanager
async def invoker_for(front: str, tmp_path: Path, api_token: str = "") -> AsyncIterator[tuple[Invoker, EchoApp]]:
    echo = EchoApp("one")
    async with (
        serving(echo) as port,
        running_sidecar(
            resources(tmp_path), app_id=APP, app_port=port, grpc=front == "grpc", api_token=api_token
        ) as sidecar,
    ):
        if front == "grpc":
            async with grpc_front(sidecar) as channel:
                yield Invoker(sidecar, channel), echo
        else:
            yield Invoker(sidecar, None), echo


@pytest.fixture
async def invoker(front: str, tmp_path: Path) -> AsyncIterator[Invoker]:
    async with invoker_for(front, tmp_path) as (invoker, _):
        yield invoker


def seen_headers(answer: Answer) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in answer.json()["headers"]:
        seen.setdefault(name, []).append(value)
    return seen


@pytest.mark.parametrize("verb", ["GET", "POST", "PUT", "DELETE", "PATCH"])
async def test_verb_and_query_string_reach_the_app(invoker: Invoker, verb: str) -> None:
    answer = await invoker.invoke("orders/7", verb, query="a=1&b=x%20y&a=2")
    assert answer.status == 200
    seen = answer.json()
    assert (seen["method"], seen["path"], seen["query"]) == (verb, "/orders/7", "a=1&b=x%20y&a=2")


async def test_body_and_content_type_round_trip(invoker: Invoker) -> None:
    body = json.dumps({"order": 7, "note": "déjà"}).encode()
    answer = await invoker.invoke("orders", "PUT", body=body, content_type="application/json; charset=utf-8")
    assert (answer.status, answer.content_type) == (200, "application/json")  # the app's answer, its type
    assert answer.json()["body"] == body.decode()
    assert seen_headers(answer)["content-type"] == ["application/json; charset=utf-8"]
    plain = await invoker.invoke("status/201", "POST", body=b"x", content_type="text/plain")
    assert (plain.status, plain.body, plain.content_type) == (201, b"POST", "text/plain")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, grpc.StatusCode.INTERNAL),
        (404, grpc.StatusCode.NOT_FOUND),
        (409, grpc.StatusCode.ALREADY_EXISTS),
        (500, grpc.StatusCode.UNKNOWN),
        (503, grpc.StatusCode.UNAVAILABLE),
        (418, grpc.StatusCode.UNKNOWN),
    ],
)
async def test_the_apps_error_status_comes_back(invoker: Invoker, status: int, code: grpc.StatusCode) -> None:
    answer = await invoker.invoke(f"status/{status}", "GET")
    assert answer.status == status
    if invoker.grpc is None:
        assert answer.body == b"GET"  # the app's own body
    else:
        assert answer.code == code  # daprd's CodeFromHTTPStatus, the status text as message
        assert answer.error == GO_TEXT.get(status, HTTPStatus(status).phrase)


async def test_an_unknown_app_id_is_err_direct_invoke(invoker: Invoker) -> None:
    answer = await invoker.invoke("anything", "GET", target="nobody")
    assert answer.status == (500 if invoker.grpc is None else 0)
    assert answer.error == "failed to invoke, id: nobody, err: no host found with the given ID"
    if invoker.grpc is not None:
        assert answer.code == grpc.StatusCode.INTERNAL


async def test_the_caller_identity_is_the_sidecars(invoker: Invoker) -> None:
    forged = (
        ("dapr-caller-app-id", "admin-app"),
        ("dapr-caller-namespace", "kube-system"),
        ("dapr-callee-app-id", "forged"),
        ("x-custom", "kept"),
    )
    answer = await invoker.invoke("whoami-echo", "POST", body=b"hi", headers=forged)
    seen = seen_headers(answer)
    assert seen["dapr-caller-app-id"] == [APP]
    assert seen["dapr-caller-namespace"] == ["default"]
    assert seen["dapr-callee-app-id"] == [APP]
    assert seen["x-custom"] == ["kept"]


async def test_the_api_token_is_required_and_not_passed_on(front: str, tmp_path: Path) -> None:
    async with invoker_for(front, tmp_path, api_token="dapr-secret") as (invoker, _):
        refused = await invoker.invoke("echo", "GET")
        assert refused.status == 401
        if invoker.grpc is not None:
            assert refused.code == grpc.StatusCode.UNAUTHENTICATED
        wrong = await invoker.invoke("echo", "GET", headers=(("dapr-api-token", "guess"),))
        assert wrong.status == 401
        admitted = await invoker.invoke("echo", "GET", headers=(("dapr-api-token", "dapr-secret"),))
        assert admitted.status == 200
        assert "dapr-api-token" not in seen_headers(admitted)
