"""The sidecar's front door: the ASGI app uvicorn serves. What Dapr does before routing, then the route table.

In order: clean the still-encoded path (``//v1.0//state/s/`` is ``/v1.0/state/s``; see ``app.paths``: routes
match the encoded path and each parameter is unescaped once), check ``dapr-api-token`` when
``DAPR_API_TOKEN`` is set (health probes exempt), refuse bodies over ``--max-body-size`` (413, also for
chunked bodies), refuse malformed escapes (400), and hold API calls until the components are initialised.
Then ``app.routing.RouteTable`` finds the endpoint (every route, no framework in between: route matching,
dependency solving and middleware stacks cost more than the work of a state get), the endpoint runs, and
any error becomes Dapr's answer through the one error table (``app.errors.render_error``).

It also runs the ASGI lifespan: the runtime starts with the server and closes with it, and with them the
gRPC front (``app.grpc``) on ``--dapr-grpc-port``, so both fronts serve together as daprd's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from app.errors import ApiError, error_response, render_error
from app.governance.front import governed_routes
from app.paths import MalformedPath, check_escapes, clean
from app.routing import RouteTable

if TYPE_CHECKING:
    from app.grpc.server import GrpcFront
    from app.runtime import Runtime

__all__ = ("BodyTooLarge", "FrontDoor")

log = logging.getLogger("layotto.runtime")
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


class FrontDoor:
    """The sidecar's ASGI app (also ``scope["app"]``, so endpoints reach ``runtime`` from the request)."""

    def __init__(self, runtime: Runtime, routes: RouteTable) -> None:
        self.runtime = runtime
        self.routes = routes
        self.token = runtime.settings.api_token.encode()
        self.max_body = runtime.settings.max_body_size
        #: The gRPC front, while the server's lifespan (or ``lifespan(grpc=True)``) runs.
        self.grpc: GrpcFront | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        raw_path: bytes | None = scope.get("raw_path")
        encoded = raw_path.decode("latin-1") if raw_path is not None else scope["path"]
        path = clean(encoded)
        scope["path"] = path  # uvicorn makes a scope per request: no copy needed
        if path is not encoded:
            scope["raw_path"] = path.encode("latin-1")
        scope["app"] = self
        headers = scope["headers"]
        if self.token and not (scope["method"] == "GET" and path in _TOKEN_EXEMPT):
            if (b"dapr-api-token", self.token) not in headers:
                await _send_plain(send, 401, b"invalid api token\n")
                return
            scope["headers"] = [h for h in headers if h[0] != b"dapr-api-token"]
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
        if chunked:
            receive = self._limited(receive)
        route, params = self.routes.match(scope["method"], path)
        try:
            response = await route.endpoint(Request(scope, receive), **params)
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

    def _limited(self, receive: Receive) -> Receive:
        """Counts a chunked body: past the limit, reading it raises ``BodyTooLarge``, which the reader's error
        handling answers with 413 like any API error."""
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        return counting_receive

    @contextlib.asynccontextmanager
    async def lifespan(self, grpc: bool = False) -> AsyncIterator[None]:
        """The runtime, started and then closed: what the server's lifespan does (tests use it directly,
        with the gRPC front only when they ask for it: it binds ``--dapr-grpc-port``)."""
        await self._start(grpc)
        try:
            yield
        finally:
            await self._close()

    async def _start(self, grpc: bool) -> None:
        await self.runtime.start()
        self.routes = await governed_routes(self.routes, self.runtime)  # spec.api, httpPipeline (or as is)
        if grpc:
            from app.grpc.server import GrpcFront  # grpcio is imported only where gRPC is served

            front = GrpcFront(self.runtime)
            await front.start()
            self.grpc = front

    async def _close(self) -> None:
        """The gRPC front first (it calls the blocks), then the runtime."""
        try:
            if self.grpc is not None:
                await self.grpc.stop()
                self.grpc = None
        finally:
            await self.runtime.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        try:
            await self._start(grpc=True)
        except BaseException as exc:
            log.exception("start-up failed")
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            raise
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        try:
            await self._close()
        finally:
            await send({"type": "lifespan.shutdown.complete"})
