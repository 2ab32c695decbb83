"""The sidecar's front door: one pure-ASGI layer for what Dapr does before routing, and a fast lane.

In order: clean the path (``//v1.0//state/s/`` is ``/v1.0/state/s``), check ``dapr-api-token`` when
``DAPR_API_TOKEN`` is set (health probes exempt), refuse bodies over ``--max-body-size`` (413), and hold
API calls until the components are initialised. Then the hot routes (state get/save, publish, invoke) go
straight to their router endpoints, skipping the framework's route matching, dependency solving and
middleware stack, which cost more than the work itself; every other request goes to the FastAPI app.
The endpoints and the error table are the same either way, so the wire is identical.
"""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response, render_error
from app.routers import invoke, publish, state

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("SidecarMiddleware",)

Handler = Callable[[Scope, Receive], Awaitable[Response]]

_TOKEN_EXEMPT = ("/v1.0/healthz", "/v1.0/healthz/outbound")
_UNGATED_PREFIXES = ("/v1.0/healthz", "/v1.0/metadata", "/actuator/", "/v1.0/shutdown")


def _clean(path: str) -> str:
    if "//" not in path and "/." not in path and not (path.endswith("/") and path != "/"):
        return path
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned != "." else "/"


async def _send_plain(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


def _hot_route(method: str, path: str, runtime: Runtime) -> Handler | None:
    """The handler of a hot route, bound to its path parameters, or None for every other request."""
    if path.startswith("/v1.0/state/"):
        store, slash, key = path[12:].partition("/")
        if not store:
            return None
        if method == "GET" and key:
            return lambda scope, receive: state.read_state(runtime, store, key, scope["query_string"])
        if method in ("POST", "PUT") and not slash:
            return lambda scope, receive: state.save_state(Request(scope, receive), store)
        return None
    if path.startswith("/v1.0/publish/") and method in ("POST", "PUT"):
        pubsub, _, topic = path[14:].partition("/")
        if pubsub and topic and pubsub != "bulk":
            return lambda scope, receive: publish.publish(Request(scope, receive), pubsub, topic)
        return None
    if path.startswith("/v1.0/invoke/") and "/method/" in path:
        return lambda scope, receive: invoke.invoke(Request(scope, receive))
    return None


class SidecarMiddleware:
    """Wraps the FastAPI app (``app``, also the ``scope["app"]`` of fast-lane requests)."""

    def __init__(self, app: ASGIApp, runtime: Runtime, framework: object | None = None) -> None:
        self.app = app
        self.framework = framework
        self.runtime = runtime
        self.token = runtime.settings.api_token.encode()
        self.max_body = runtime.settings.max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _clean(scope["path"])
        if path is not scope["path"]:
            scope = {**scope, "path": path, "raw_path": path.encode()}
        headers = scope["headers"]
        if self.token and not (scope["method"] == "GET" and path in _TOKEN_EXEMPT):
            if (b"dapr-api-token", self.token) not in headers:
                await _send_plain(send, 401, b"invalid api token\n")
                return
            scope = {**scope, "headers": [h for h in headers if h[0] != b"dapr-api-token"]}
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await self._too_large(scope, receive, send)
                return
        if not self.runtime.ready and not path.startswith(_UNGATED_PREFIXES):
            await self.runtime.wait_settled()
        target = self.app
        if self.framework is not None and (handler := _hot_route(scope["method"], path, self.runtime)) is not None:
            target = partial(self._fast_lane, handler)
        if scope["method"] in ("GET", "HEAD", "DELETE"):
            await target(scope, receive, send)
            return
        await self._limited(scope, receive, send, target)

    async def _fast_lane(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self.framework
        try:
            response = await handler(scope, receive)
        except _BodyTooLarge:
            raise
        except Exception as exc:
            response = render_error(exc, self.runtime.settings.app_id)
        await response(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "ERR_BODY_READ", f"request body exceeds the limit of {self.max_body} bytes")
        await response(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, target: ASGIApp) -> None:
        """Counts chunked bodies too: past the limit the request fails with 413 before the route sees it all."""
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await target(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large(scope, receive, send)
