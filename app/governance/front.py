"""The one hook of governance in the HTTP front: the route table the front door dispatches by, once the
runtime has read its ``--config``. Unconfigured, the table is returned as it is: nothing added per request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.governance.api_access import govern_routes
from app.routing import RouteTable

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("governed_routes",)


def governed_routes(table: RouteTable, runtime: Runtime) -> RouteTable:
    """``table`` without the APIs ``spec.api`` does not serve."""
    spec = runtime.core.configuration_spec
    if spec.api.allowed or spec.api.denied:
        table = govern_routes(table, spec.api)
    return table
