"""The hooks of governance in the HTTP front.

``prepare(runtime)`` (from the runtime's ``prepare()``, so a bad middleware is a one-line start-up error like
any bad component) builds the ``spec.httpPipeline`` middlewares; ``governed_routes`` then gives the front
door its route table: without the APIs ``spec.api`` does not serve, behind those middlewares. Unconfigured,
the table is returned as it is: nothing is added per request.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from app.governance.api_access import govern_routes
from app.governance.pipeline import Middleware, MiddlewareSpec, build, wrap
from app.routing import RouteTable
from building_blocks.errors import SpecError

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("governed_routes", "prepare")

_BUILT: weakref.WeakKeyDictionary[Runtime, list[Middleware]] = weakref.WeakKeyDictionary()


async def prepare(runtime: Runtime) -> None:
    """Build the HTTP pipeline once; ``SpecError`` for bad middleware or a pipeline this sidecar cannot run."""
    if runtime in _BUILT:
        return
    core = runtime.core
    spec = core.configuration_spec
    components = {
        name: MiddlewareSpec(name, component.type, component.version, values, component.where)
        for name, (component, values) in core.middleware.items()
    }
    active = [handler.name for handler in spec.app_http_pipeline.handlers if handler.name in components]
    if active:  # refused rather than ignored: a middleware the operator relies on must not silently not run
        raise SpecError(
            f"{spec.source}: spec.appHttpPipeline is not supported yet (handlers {', '.join(active)}): "
            "remove it, or apply the middleware on the calling side's httpPipeline"
        )
    _BUILT[runtime] = await build(spec.http_pipeline, components) if components else []


async def governed_routes(table: RouteTable, runtime: Runtime) -> RouteTable:
    """``table`` without the APIs ``spec.api`` does not serve, behind the ``spec.httpPipeline`` handlers."""
    await prepare(runtime)
    api = runtime.core.configuration_spec.api
    if api.allowed or api.denied:
        table = govern_routes(table, api)
    return wrap(table, _BUILT[runtime])
