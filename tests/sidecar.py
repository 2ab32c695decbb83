"""Build a sidecar app in-process from YAML specs, and talk to it over real HTTP semantics (ASGI)."""

from __future__ import annotations

import contextlib
import textwrap
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.main import create_app
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


@contextlib.asynccontextmanager
async def running_sidecar(
    resources: Path, app_id: str | None = None, wait: bool = True, grpc: bool = False, **settings: object
) -> AsyncIterator[Sidecar]:
    """``grpc``: serve the gRPC front too, on a free port (``Sidecar.grpc_port``)."""
    app_id = app_id if app_id is not None else f"test-{uuid.uuid4().hex[:12]}"
    if grpc:
        settings = {"grpc_port": 0, **settings}
    config = Settings(app_id=app_id, resources_paths=(resources,), **settings)  # type: ignore[arg-type]
    app = create_app(config)
    runtime: Runtime = app.runtime
    async with app.lifespan(grpc=grpc):
        if wait:
            await runtime.wait_ready()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
            yield Sidecar(client, runtime, app_id, grpc_port=app.grpc.port if app.grpc is not None else 0)
