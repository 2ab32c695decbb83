"""The sidecar's front door: the ASGI app uvicorn serves. What Dapr does before routing, then the route table.

In order: clean the still-encoded path (``//v1.0//state/s/`` is ``/v1.0/state/s``; see ``app.paths``: routes
match the encoded path and each parameter is unescaped once), check ``dapr-api-token`` when
``DAPR_API_TOKEN`` is set (health probes exempt), refuse bodies over ``--max-body-size`` (413, also for
chunked bodies), refuse malformed escapes (400), and hold API calls until the components are initialised.
Then ``app.routing.RouteTable`` finds the endpoint (every route, no framework in between: route matching,
dependency solving and middleware stacks cost more than the work of a state get). All of that is
``FrontDoor.admit``, the one copy the protocol lane (``app.lane``) calls too, so a check added there applies
to both lanes. Then the endpoint runs, and any error becomes Dapr's answer through the one error table
(``app.errors.render_error``).

It also runs the ASGI lifespan: the runtime starts with the server and closes with it, and with them the
gRPC front (``app.grpc``) on ``--dapr-grpc-port``, so both fronts serve together as daprd's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from app.errors import ApiError, error_response, render_error
from app.governance.front import governed_routes
from app.paths import MalformedPath, check_escapes, clean
from app.routing import Route, RouteTable

if TYPE_CHECKING:
    from app.grpc.server import GrpcFront
    from app.observability.metrics import DaprMetrics
    from app.runtime import Runtime

__all__ = ("UNKNOWN_LENGTH", "Admitted", "BodyTooLarge", "FrontDoor", "plain_response")

log = logging.getLogger("layotto.runtime")
_TOKEN = b"dapr-api-token"
_TOKEN_EXEMPT = ("/v1.0/healthz", "/v1.0/healthz/outbound")
_UNGATED_PREFIXES = ("/v1.0/healthz", "/v1.0/metadata", "/actuator/", "/v1.0/shutdown")
#: ``Admitted.length`` of a body whose length no ``Content-Length`` gives (chunked): counted while it is read.
UNKNOWN_LENGTH = -1


def plain_response(status: int, text: bytes) -> Response:
    """A plain-text refusal, as Go's ``http.Error`` writes it (headers in daprd's order)."""
    response = Response(text, status)
    response.raw_headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(text)).encode()),
    ]
    return response


_INVALID_TOKEN = plain_response(401, b"invalid api token\n")


class BodyTooLarge(ApiError):
    """Raised while a body is read, so that whoever reads it (a route, the invoker's relay) answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "ERR_BODY_READ", f"request body exceeds the limit of {limit} bytes")


def _too_large(limit: int) -> Response:
    error = BodyTooLarge(limit)
    return error_response(error.status, error.code, error.message)


def _malformed(exc: MalformedPath) -> Response:
    if exc.plain:  # as daprd's parameter unescaping answers (Go's http.Error)
        return plain_response(400, exc.message.encode() + b"\n")
    return error_response(400, "ERR_MALFORMED_REQUEST", exc.message)


#: Where an admitted request goes: the route, its parameters, and its body's ``Content-Length``
#: (``UNKNOWN_LENGTH`` when chunked). A plain tuple: the hot path makes one per request, and a named tuple's
#: constructor is a Python call.
Admitted = tuple[Route, dict[str, str], int]


class FrontDoor:
    """The sidecar's ASGI app (also ``scope["app"]``, so endpoints reach ``runtime`` from the request)."""

    def __init__(self, runtime: Runtime, routes: RouteTable) -> None:
        self.runtime = runtime
        self.routes = routes
        self.token = runtime.settings.api_token.encode()
        self.max_body = runtime.settings.max_body_size
        #: The gRPC front, while the server's lifespan (or ``lifespan(grpc=True)``) runs.
        self.grpc: GrpcFront | None = None

    def admit(self, scope: Scope, hold: bool = True) -> Admitted | Response | None:
        """Everything decided before dispatch, the one copy both lanes run (``app.lane.api`` too): the
        ``Admitted`` route, or the refusal to answer, or ``None`` while the runtime starts (``hold``: wait for
        it to settle, then admit with ``hold=False``).

        ``scope`` needs ``method``, ``headers`` and the still-encoded ``raw_path`` (else ``path``); it gets the
        cleaned ``path`` (and ``raw_path``), ``app``, and once admitted the headers without the API token."""
        raw_path: bytes | None = scope.get("raw_path")
        encoded = raw_path.decode("latin-1") if raw_path is not None else scope["path"]
        path = clean(encoded)
        scope["path"] = path
        scope["app"] = self
        headers = scope["headers"]
        token = self.token
        if token and not (scope["method"] == "GET" and path in _TOKEN_EXEMPT):
            if (_TOKEN, token) not in headers:
                return _INVALID_TOKEN
            headers = [h for h in headers if h[0] != _TOKEN]
        length = 0
        chunked = False  # with a Content-Length the server reads exactly that much: only chunked bodies are counted
        for name, value in headers:
            if name == b"content-length":
                if not value.isdigit():
                    chunked = True  # the parser refuses these: should one get here, it is counted as read
                elif int(value) > self.max_body:
                    return _too_large(self.max_body)
                else:
                    length = int(value)
            elif name == b"transfer-encoding":
                chunked = True
        if "%" in path or not path.isascii():  # what check_escapes looks at (no call for a plain path)
            try:
                check_escapes(path)
            except MalformedPath as exc:
                return _malformed(exc)
        if hold and not self.runtime.core.ready and not path.startswith(_UNGATED_PREFIXES):  # (no property call)
            return None  # API calls wait until the components are initialised
        if path is not encoded:
            scope["raw_path"] = path.encode("latin-1")
        scope["headers"] = headers
        route, params = self.routes.match(scope["method"], path)
        return route, params, UNKNOWN_LENGTH if chunked else length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        admitted = self.admit(scope)
        if admitted is None:
            await self.runtime.wait_settled()
            admitted = self.admit(scope, hold=False)
            assert admitted is not None
        if isinstance(admitted, Response):
            await admitted(scope, receive, send)  # a refusal
            return
        route, params, length = admitted
        if length < 0:  # UNKNOWN_LENGTH: chunked
            receive = self._limited(receive)
        try:
            response = await route.endpoint(Request(scope, receive), **params)
        except Exception as exc:
            response = render_error(exc, self.runtime.settings.app_id)
        await response(scope, receive, send)

    def lane_metrics(self) -> tuple[bool, DaprMetrics | None]:
        """Whether a request may be served without this door around the route (``ObservedFrontDoor`` observes
        some things only there), and the metrics to count it in then."""
        return True, None

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
