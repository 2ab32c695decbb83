"""Invocations other sidecars deliver to this one (the internal listener), observed: daprd's callee span
(``CallLocal/<app>/<method>``, its parent the caller sidecar's span) and the received/sent invocation counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("observed_hop",)

_PREFIX = "/v1.0/invoke/"


def observed_hop(app: ASGIApp, runtime: Runtime) -> ASGIApp:
    """``app`` (the internal listener's), with the hop's span and metrics when they are on."""

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        observability = runtime.observability
        path: str = scope.get("path", "")
        if scope["type"] != "http" or observability is None or not path.startswith(_PREFIX):
            await app(scope, receive, send)
            return
        target, _, rest = path[len(_PREFIX) :].partition("/")
        method = rest.partition("/")[2]
        caller = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"dapr-caller-app-id"), "")
        metrics, tracing = observability.metrics, observability.tracing
        span = tracing.hop(scope, target, method) if tracing is not None else None
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        if metrics is not None:
            metrics.invocation_received(caller)
        try:
            await app(scope, receive, observed_send)
        finally:
            if span is not None:
                span.end(status)
            if metrics is not None:
                metrics.invocation_responded(caller, status)

    return observed
