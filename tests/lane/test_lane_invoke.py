"""Service invocation on the protocol lane: small answers relayed whole, large ones streamed at the caller's
pace, large request bodies left to the ASGI lane's streaming, pipelined invocations, a caller that goes away."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from app.http_server import api_protocol
from app.main import create_app
from app.settings import Settings
from tests.api.test_invoke_api import resources, serving
from tests.e2e.apps.echo import PATTERN, EchoApp
from tests.lane.wire import connect, request
from tests.sidecar import Sidecar, running_sidecar


@contextlib.asynccontextmanager
async def _sidecar(tmp_path: Path, lane: str) -> AsyncIterator[Sidecar]:
    async with contextlib.AsyncExitStack() as stack:
        port = await stack.enter_async_context(serving(EchoApp("one")))
        yield await stack.enter_async_context(
            running_sidecar(resources(tmp_path), app_id="myapp", app_port=port, lane=lane)
        )


@pytest.fixture(params=["asgi", "protocol"])
async def sidecar(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Sidecar]:
    """On either lane: the answers must be the same."""
    async with _sidecar(tmp_path, request.param) as running:
        yield running


@pytest.fixture
async def lane_sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    """On the protocol lane, served on a socket for raw connections."""
    async with _sidecar(tmp_path, "protocol") as running:
        yield running


def _port(sidecar: Sidecar) -> int:
    port: int = sidecar.client._transport.port  # type: ignore[attr-defined]
    return port


def _expected(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


async def test_a_small_answer_with_a_length_goes_back_whole(sidecar: Sidecar) -> None:
    # The app writes its head and its body apart; the relay waits for the body and answers in one piece.
    answer = await sidecar.client.get("/v1.0/invoke/myapp/method/source?bytes=3000")
    assert answer.status_code == 200 and answer.content == _expected(3000)
    assert answer.headers["content-length"] == "3000" and "transfer-encoding" not in answer.headers


async def test_a_large_answer_streams_back_chunked(sidecar: Sidecar) -> None:
    size = 3 << 20
    digest = hashlib.sha256()
    received = 0
    async with sidecar.client.stream("GET", f"/v1.0/invoke/myapp/method/source?bytes={size}") as answer:
        assert answer.status_code == 200 and "content-length" not in answer.headers  # streamed as it arrives
        async for chunk in answer.aiter_raw():
            digest.update(chunk)
            received += len(chunk)
    assert received == size and digest.hexdigest() == hashlib.sha256(_expected(size)).hexdigest()


async def test_a_large_request_body_streams_to_the_app(sidecar: Sidecar) -> None:
    body = b"z" * (1 << 20)
    answer = await sidecar.client.post("/v1.0/invoke/myapp/method/sink", content=body)
    assert answer.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


async def test_pipelined_invocations_on_one_connection(lane_sidecar: Sidecar) -> None:
    calls = [request("POST", f"/v1.0/invoke/myapp/method/status/{code}", b"x" * 100) for code in (200, 201, 202)]
    async with connect(_port(lane_sidecar)) as connection:
        await connection.send(b"".join(calls))
        answers = await connection.answers(3)
    assert [(a.status, a.body) for a in answers] == [(200, b"POST"), (201, b"POST"), (202, b"POST")]


async def test_a_caller_that_goes_away_mid_stream_leaves_the_sidecar_serving(lane_sidecar: Sidecar) -> None:
    async with connect(_port(lane_sidecar)) as connection:
        await connection.send(request("GET", f"/v1.0/invoke/myapp/method/source?bytes={64 << 20}"))
        async with asyncio.timeout(30):
            while len(connection.raw) < 1 << 20:
                await connection._read()
        connection.writer.transport.abort()
    answer = await lane_sidecar.client.get("/v1.0/invoke/myapp/method/status/200")
    assert answer.status_code == 200


async def test_shutdown_drains_an_invocation_in_flight(tmp_path: Path) -> None:
    async with serving(EchoApp("one")) as app_port:
        settings = Settings(
            app_id="myapp", resources_paths=(resources(tmp_path),), app_port=app_port, http_lane="protocol"
        )
        door = create_app(settings)
        async with door.lifespan():
            await door.runtime.wait_ready()
            config = uvicorn.Config(
                door, host="127.0.0.1", port=0, http=api_protocol(settings, door), lifespan="off", log_config=None
            )
            server = uvicorn.Server(config)
            task = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            async with connect(port) as connection:
                await connection.send(request("GET", "/v1.0/invoke/myapp/method/slow?ms=400"))
                async with asyncio.timeout(30):
                    while not _in_flight(server):  # the lane serves it (in a task, or from its callbacks)
                        await asyncio.sleep(0.005)
                server.should_exit = True
                answers = await connection.until_closed()
            await task
    assert [(a.status, a.body) for a in answers] == [(200, b"slow")]
    assert answers[0].header(b"connection") == b"close"


def _in_flight(server: uvicorn.Server) -> bool:
    """A request the server has begun and not answered yet."""
    connections: set[Any] = server.server_state.connections
    return any(c.cycle is not None and not c.cycle.response_complete for c in connections)
