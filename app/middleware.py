"""The sidecar's front door: one pure-ASGI layer for what Dapr does before routing, and a fast lane.

In order: clean the still-encoded path (``//v1.0//state/s/`` is ``/v1.0/state/s``; see ``app.paths``: routes
match the encoded path and each parameter is unescaped once), check ``dapr-api-token`` when
``DAPR_API_TOKEN`` is set (health probes exempt), refuse bodies over ``--max-body-size`` (413, also for
chunked bodies), refuse malformed escapes (400), and hold API calls until the components are initialised.
Then the hot routes (state get/save, publish, invoke) go straight to their router endpoints, skipping the
framework's route matching, dependency solving and middleware stack, which cost more than the work itself;
every other request goes to the FastAPI app.
The endpoints and the error table are the same either way, so the wire is identical.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError, error_response, render_error
from app.paths import MalformedPath, check_escapes, clean, unescape
from app.routers import invoke, publish, state

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("SidecarMiddleware",)

Handler = Callable[[Scope, Receive], Awaitable[Response]]

_TOKEN_EXEMPT = ("/v1.0/healthz", "/v1.0/healthz/outbound")
_UNGATED_PREFIXES = ("/v1.0/healthz", "/v1.0/metadata", "/actuator/", "/v1.0/shutdown")


async def _send_plain(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(ApiError):
    """Raised while a body is read, so that whoever reads it (a route, the invoker's relay) answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "ERR_BODY_READ", f"request body exceeds the limit of {limit} bytes")


def _hot_route(method: str, path: str, runtime: Runtime) -> Handler | None:
    """The handler of a hot route, bound to its (unescaped) path parameters, or None for every other request.

    ``path`` is still encoded, as the routes of ``app.routers`` see it."""
    if path.startswith("/v1.0/state/"):
        store, slash, key = path[12:].partition("/")
        if not store:
            return None
        if method == "GET" and key:
            store, key = unescape(store), unescape(key)
            return lambda scope, receive: state.read_state(runtime, store, key, scope["query_string"])
        if method in ("POST", "PUT") and not slash:
            store = unescape(store)
            return lambda scope, receive: state.save_state(Request(scope, receive), store)
        return None
    if path.startswith("/v1.0/publish/") and method in ("POST", "PUT"):
        pubsub, _, topic = path[14:].partition("/")
        if pubsub and topic and pubsub != "bulk":
            pubsub, topic = unescape(pubsub), unescape(topic)
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
        raw_path: bytes | None = scope.get("raw_path")
        path = clean(raw_path.decode("latin-1") if raw_path is not None else scope["path"])
        scope["path"] = path  # uvicorn makes a scope per request: no copy needed
        scope["raw_path"] = path.encode("latin-1")
        headers = scope["headers"]
        if self.token and not (scope["method"] == "GET" and path in _TOKEN_EXEMPT):
            if (b"dapr-api-token", self.token) not in headers:
                await _send_plain(send, 401, b"invalid api token\n")
                return
            scope = {**scope, "headers": [h for h in headers if h[0] != b"dapr-api-token"]}
        chunked = False  # with Content-Length, the server reads exactly that much: only chunked bodies are counted
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await self._too_large(scope, receive, send)
                return
            if name == b"transfer-encoding":
                chunked = True
        try:
            check_escapes(path)
        except MalformedPath as exc:
            await self._malformed(exc, scope, receive, send)
            return
        if not self.runtime.ready and not path.startswith(_UNGATED_PREFIXES):
            await self.runtime.wait_settled()
        target = self.app
        if self.framework is not None and (handler := _hot_route(scope["method"], path, self.runtime)) is not None:
            target = partial(self._fast_lane, handler)
        if chunked:
            await self._limited(scope, receive, send, target)
        else:
            await target(scope, receive, send)

    async def _fast_lane(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self.framework
        try:
            response = await handler(scope, receive)
        except Exception as exc:
            response = render_error(exc, self.runtime.settings.app_id)
        await response(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = BodyTooLarge(self.max_body)
        await error_response(error.status, error.code, error.message)(scope, receive, send)

    @staticmethod
    async def _malformed(exc: MalformedPath, scope: Scope, receive: Receive, send: Send) -> None:
        if exc.plain:  # as daprd's parameter unescaping answers (Go's http.Error)
            await _send_plain(send, 400, exc.message.encode() + b"\n")
        else:
            await error_response(400, "ERR_MALFORMED_REQUEST", exc.message)(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, target: ASGIApp) -> None:
        """Counts chunked bodies too: past the limit, reading the body raises ``BodyTooLarge``, which the
        reader's error handling answers with 413 like any API error."""
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        await target(scope, counting_receive, send)
