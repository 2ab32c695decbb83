"""Dapr's HTTP middleware pipeline (``spec.httpPipeline.handlers`` of the ``--config`` Configuration).

Each handler names a loaded ``middleware.http.*`` component (same name, type and version; an empty version
or ``v1`` on either side are the same); a handler without one is skipped, as daprd does. The first handler
runs first (outermost). The pipeline runs after the front door's own checks (API token, body size) and
before the endpoint, around every route and the invocation fallback: ``wrap`` builds a route table whose
endpoints are wrapped, so a sidecar without a pipeline dispatches exactly as before.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from app.routing import Endpoint, Router, RouteTable
from building_blocks.configuration_spec import PipelineSpec
from building_blocks.errors import SpecError

__all__ = ("Middleware", "MiddlewareSpec", "build", "wrap")

log = logging.getLogger("layotto.governance")

Next = Callable[[], Awaitable[Response]]


class Middleware(Protocol):
    """One handler: answers the request itself (a refusal) or calls ``proceed`` (and may add headers)."""

    async def __call__(self, request: Request, proceed: Next) -> Response: ...


@dataclasses.dataclass(frozen=True, slots=True)
class MiddlewareSpec:
    """A loaded ``middleware.http.*`` component: its name, type, version, metadata (resolved) and file."""

    name: str
    type: str
    version: str
    metadata: Mapping[str, str]
    where: str


def _factories() -> dict[str, Callable[[MiddlewareSpec], Awaitable[Middleware]]]:
    from app.governance import bearer, ratelimit, routerchecker, sentinel

    return {
        "middleware.http.ratelimit": ratelimit.create,
        "middleware.http.routerchecker": routerchecker.create,
        "middleware.http.bearer": bearer.create,
        "middleware.http.sentinel": sentinel.create,
    }


def _same_version(a: str, b: str) -> bool:
    return (a or "v1") == (b or "v1")


async def build(pipeline: PipelineSpec, components: Mapping[str, MiddlewareSpec]) -> list[Middleware]:
    """The pipeline's middlewares, in order; ``SpecError`` for a component of a type no one implements."""
    factories = _factories()
    for loaded in components.values():
        if loaded.type.lower() not in factories:
            kind = f"{loaded.type}/{loaded.version or 'v1'}"
            raise SpecError(f"{loaded.where}: HTTP middleware {kind} has not been registered")
    built: list[Middleware] = []
    for handler in pipeline.handlers:
        spec = components.get(handler.name)
        if spec is None or spec.type.lower() != handler.type or not _same_version(spec.version, handler.version):
            log.warning("HTTP pipeline handler %s (%s) has no matching component: skipped", handler.name, handler.type)
            continue
        try:
            built.append(await factories[handler.type](spec))
        except SpecError:
            raise
        except Exception as exc:
            raise SpecError(f"{spec.where}: error creating HTTP middleware {spec.type}: {exc}") from None
        log.info("HTTP pipeline: %s (%s)", handler.name, handler.type)
    return built


def _chain(middlewares: Sequence[Middleware], endpoint: Endpoint) -> Endpoint:
    async def run(request: Request, **params: Any) -> Response:
        proceed: Next = partial(endpoint, request, **params)
        for middleware in reversed(middlewares):
            proceed = partial(middleware, request, proceed)
        return await proceed()

    return run


def wrap(table: RouteTable, middlewares: Sequence[Middleware]) -> RouteTable:
    """``table`` with every endpoint (the fallback too) behind ``middlewares``."""
    if not middlewares:
        return table
    router = Router()
    router.routes = [dataclasses.replace(r, endpoint=_chain(middlewares, r.endpoint)) for r in table.routes]
    return RouteTable([router], _chain(middlewares, table.fallback.endpoint))
