"""The hooks of governance in the HTTP front.

``prepare(runtime)`` (from the runtime's ``prepare()``, so a bad middleware is a one-line start-up error like
any bad component) builds the ``spec.httpPipeline`` middlewares, and puts the ``spec.appHttpPipeline`` ones
on the app channel; ``governed_routes`` then gives the front door its route table: without the APIs
``spec.api`` does not serve, behind the API pipeline. Unconfigured, the table is returned as it is and the
app channel is untouched: nothing is added per request, and the pipeline and API-rule modules (with their
HTTP client) are not even imported: a plain sidecar's start-up does not pay for them.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from building_blocks.errors import SpecError

if TYPE_CHECKING:
    from app.governance.pipeline import Middleware
    from app.routing import RouteTable
    from app.runtime import Runtime

__all__ = ("governed_routes", "prepare")

_BUILT: weakref.WeakKeyDictionary[Runtime, list[Middleware]] = weakref.WeakKeyDictionary()


async def prepare(runtime: Runtime) -> None:
    """Build the pipelines once; ``SpecError`` for a bad middleware."""
    if runtime in _BUILT:
        return
    core = runtime.core
    spec = core.configuration_spec
    if not core.middleware:
        _BUILT[runtime] = []
        return
    from app.governance.app_pipeline import PipelinedClient
    from app.governance.pipeline import MiddlewareSpec, build

    components = {
        name: MiddlewareSpec(name, component.type, component.version, values, component.where)
        for name, (component, values) in core.middleware.items()
    }
    _BUILT[runtime] = await build(spec.http_pipeline, components)
    channel = runtime.app_channel
    if channel is None or not spec.app_http_pipeline.handlers:
        return
    if runtime.settings.app_protocol.lower() not in ("http", "https"):
        raise SpecError(f"{spec.source}: spec.appHttpPipeline applies to HTTP apps only (as in Dapr)")
    app_side = await build(spec.app_http_pipeline, components)
    if app_side:
        channel.route_through(lambda client: PipelinedClient(client, app_side))


async def governed_routes(table: RouteTable, runtime: Runtime) -> RouteTable:
    """``table`` without the APIs ``spec.api`` does not serve, behind the ``spec.httpPipeline`` handlers."""
    await prepare(runtime)
    api = runtime.core.configuration_spec.api
    if api.allowed or api.denied:
        from app.governance.api_access import govern_routes

        table = govern_routes(table, api)
    middlewares = _BUILT[runtime]
    if not middlewares:
        return table
    from app.governance.pipeline import wrap

    return wrap(table, middlewares)
