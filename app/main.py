"""``create_app(settings)``: the sidecar's ASGI app: the front door over the one route table."""

from __future__ import annotations

from app.middleware import FrontDoor
from app.observability.front import ObservedFrontDoor
from app.observability.setup import wanted
from app.routers import (
    configuration,
    health,
    invoke,
    lock,
    metadata,
    publish,
    secrets,
    sequencer,
    state,
    unserved,
)
from app.routing import RouteTable
from app.runtime import Runtime
from app.settings import Settings

__all__ = ("ROUTERS", "create_app")

#: Every router, in the order its routes are tried; what matches none is a service invocation.
ROUTERS = (health, metadata, state, secrets, publish, lock, sequencer, configuration, unserved, invoke)


def routes() -> RouteTable:
    return RouteTable((module.router for module in ROUTERS), fallback=invoke.fallback)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FrontDoor:
    """The sidecar app. Pass a prepared ``runtime`` to reuse it; otherwise one is made from ``settings``.

    The front door is the observed one only when the flags ask for metrics, API logging or a ``--config``."""
    runtime = runtime or Runtime(settings or Settings.from_environment())
    door = ObservedFrontDoor if wanted(runtime.settings) else FrontDoor
    return door(runtime, routes())
