"""Invocations other sidecars deliver to this one (the internal listener), observed: daprd's callee span
(``CallLocal/<app>/<method>``, its parent the caller sidecar's span, and the parent of what the app is sent)
and the received/sent invocation counts. Both ways a hop is served (``HopApp``, the protocol lane) call
``serve_hop`` here instead of the invoker's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("serve_hop",)

ServeHop = Callable[[Request, str, str], Awaitable[Response]]


async def serve_hop(runtime: Runtime, serve: ServeHop, request: Request, target: str, method: str) -> Response:
    """``serve(request, target, method)`` (the invoker's ``serve_hop``), measured and traced when that is on."""
    observability = runtime.observability
    if observability is None or (observability.metrics is None and observability.tracing is None):
        return await serve(request, target, method)
    metrics, tracing = observability.metrics, observability.tracing
    scope = request.scope
    caller = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"dapr-caller-app-id"), "")
    span = tracing.hop(scope, target, method) if tracing is not None else None  # before the headers are read
    if metrics is not None:
        metrics.invocation_received(caller)
    status = 500
    try:
        response = await serve(request, target, method)
        status = response.status_code
        return response
    finally:
        if span is not None:
            span.end(status)
        if metrics is not None:
            metrics.invocation_responded(caller, status)
