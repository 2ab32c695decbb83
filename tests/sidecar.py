"""Build a sidecar app in-process from YAML specs, and talk to it over real HTTP semantics (ASGI)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import textwrap
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

from app.http_server import api_protocol
from app.main import create_app
from app.middleware import FrontDoor
from app.runtime import Runtime
from app.settings import Settings


def component_yaml(name: str, component_type: str, metadata: Mapping[str, str] | None = None, extra: str = "") -> str:
    items = "".join(f"\n    - name: {k}\n      value: {v!r}" for k, v in (metadata or {}).items())
    body = f"""\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: {name}
        spec:
          type: {component_type}
          version: v1
          metadata:"""
    return textwrap.dedent(body) + (items or " []") + "\n" + extra


@dataclass
class Sidecar:
    client: httpx.AsyncClient
    runtime: Runtime
    app_id: str
    info: dict[str, object] = field(default_factory=dict)
    #: The gRPC front's port, when the sidecar was started with ``grpc=True`` (else 0).
    grpc_port: int = 0


#: The lane ``running_sidecar`` serves on when it is not told (``tests/api`` runs every test over both).
default_lane = "asgi"


class _LoopbackTransport(httpx.AsyncHTTPTransport):
    """Real HTTP to the sidecar's port on loopback, whatever host the URL names (``Host`` stays as given);
    ``app`` is the ASGI app, as on ``httpx.ASGITransport``, for tests that drive it directly."""

    def __init__(self, port: int, app: FrontDoor) -> None:
        super().__init__()
        self.port = port
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return await super().handle_async_request(request)


@contextlib.asynccontextmanager
async def _serving(app: FrontDoor, config: Settings) -> AsyncIterator[int]:
    """``app`` served by uvicorn on the protocol lane, on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        server = uvicorn.Server(
            uvicorn.Config(app, http=api_protocol(config, app), lifespan="off", log_config=None, server_header=False)
        )
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            yield int(sock.getsockname()[1])
        finally:
            server.should_exit = True
            await task


@contextlib.asynccontextmanager
async def running_sidecar(
    resources: Path,
    app_id: str | None = None,
    wait: bool = True,
    grpc: bool = False,
    lane: str | None = None,
    **settings: object,
) -> AsyncIterator[Sidecar]:
    """``grpc``: serve the gRPC front too, on a free port (``Sidecar.grpc_port``). ``lane``: ``asgi`` (the app
    in-process) or ``protocol`` (uvicorn on loopback with ``app.lane``); ``default_lane`` when not given."""
    app_id = app_id if app_id is not None else f"test-{uuid.uuid4().hex[:12]}"
    settings = {"metrics_port": 0, **settings}  # metrics on, as by default, on a free port: never 9090 twice
    if grpc:
        settings = {"grpc_port": 0, **settings}
    lane = lane or default_lane
    config = Settings(app_id=app_id, resources_paths=(resources,), http_lane=lane, **settings)  # type: ignore[arg-type]
    app = create_app(config)
    runtime: Runtime = app.runtime
    async with app.lifespan(grpc=grpc):
        if wait:
            await runtime.wait_ready()
        async with contextlib.AsyncExitStack() as stack:
            transport: httpx.AsyncBaseTransport
            if lane == "protocol":
                transport = _LoopbackTransport(await stack.enter_async_context(_serving(app, config)), app)
            else:
                transport = httpx.ASGITransport(app=app)
            client = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://sidecar"))
            yield Sidecar(client, runtime, app_id, grpc_port=app.grpc.port if app.grpc is not None else 0)
