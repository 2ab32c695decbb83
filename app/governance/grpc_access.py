"""``spec.api`` on the gRPC front: the Dapr service's methods that the rules do not allow are replaced, once at
registration, by a refusal (UNIMPLEMENTED with daprd's ErrorInfo); allowed methods run as they are. Imported
only where gRPC is served; the rules' module only when ``spec.api`` has rules."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from app.grpc.status import abort_with

if TYPE_CHECKING:
    import grpc

    from app.runtime import Runtime

    Context = grpc.aio.ServicerContext[Any, Any]

__all__ = ("refuse_blocked",)

_DAPR = "/dapr.proto.runtime.v1.Dapr/"


def _refusal(method: Callable[..., Any]) -> Callable[..., Any]:
    from app.governance.api_access import GRPC_NOT_AVAILABLE

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
            await abort_with(context, GRPC_NOT_AVAILABLE)
            yield  # pragma: no cover - abort_with raises

        return streaming

    @functools.wraps(method)
    async def unary(request: Any, context: Context) -> Any:
        await abort_with(context, GRPC_NOT_AVAILABLE)

    return unary


def refuse_blocked(servicer: Any, names: list[str], runtime: Runtime) -> list[str]:
    """Replace the methods ``names`` of the Dapr ``servicer`` that ``spec.api`` blocks; the names replaced."""
    api = runtime.core.configuration_spec.api
    if not (api.allowed or api.denied):
        return []
    from app.governance.api_access import GrpcApiAccess

    access = GrpcApiAccess(api)
    if not access.active:
        return []
    blocked = [name for name in names if access.blocked(_DAPR + name)]
    for name in blocked:
        setattr(servicer, name, _refusal(getattr(servicer, name)))
    return blocked
