"""The front door, observed: every API call measured in one place, around the route table's dispatch.

``create_app`` uses it instead of ``FrontDoor`` when the flags ask for metrics, API logging or a
``--config`` file; otherwise the plain door runs and nothing here costs anything. The status and the
response size are read off the ASGI messages as they are sent.
"""

from __future__ import annotations

from time import perf_counter

from starlette.types import Message, Receive, Scope, Send

from app.middleware import FrontDoor

__all__ = ("ObservedFrontDoor",)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


class ObservedFrontDoor(FrontDoor):
    """``FrontDoor`` with metrics (and API logging, tracing) around each request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        observability = self.runtime.observability
        if scope["type"] != "http" or observability is None or not observability.measures:
            await FrontDoor.__call__(self, scope, receive, send)
            return
        started = perf_counter()
        status = 500  # what a request that fails before answering is counted as
        size = 0

        async def observed_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await FrontDoor.__call__(self, scope, receive, observed_send)
        finally:
            seconds = perf_counter() - started
            method, path = scope["method"], scope["path"]
            metrics = observability.metrics
            if metrics is not None:
                metrics.http_server(method, path, status, _content_length(scope["headers"]), size, seconds)
            api_log = observability.api_log
            if api_log is not None:
                template = self.routes.match(method, path).route.template if api_log.obfuscate else None
                api_log.request(method, path, template, status, size, seconds, scope)
