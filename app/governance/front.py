"""The one hook of governance in the HTTP front: the route table the front door dispatches by, once the
runtime has read its ``--config``. Unconfigured, the table is returned as it is: nothing added per request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.governance.api_access import govern_routes
from app.governance.pipeline import MiddlewareSpec, build, wrap
from app.routing import RouteTable

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("governed_routes",)


async def governed_routes(table: RouteTable, runtime: Runtime) -> RouteTable:
    """``table`` without the APIs ``spec.api`` does not serve, behind the ``spec.httpPipeline`` handlers."""
    core = runtime.core
    spec = core.configuration_spec
    if spec.api.allowed or spec.api.denied:
        table = govern_routes(table, spec.api)
    components = {
        name: MiddlewareSpec(name, component.type, component.version, values, component.where)
        for name, (component, values) in core.middleware.items()
    }
    if spec.http_pipeline.handlers or components:
        table = wrap(table, await build(spec.http_pipeline, components))
    return table
