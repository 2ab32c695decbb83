"""The API port's lane: state get and save, publish and service invocation, claimed from the front door's
route table and answered by the very endpoints the ASGI app runs.

A request is claimed only when the front door would take it straight to one of those endpoints: the
runtime is ready, the API token (when set) is right, the body has a ``Content-Length`` within
``--max-body-size`` (within the invocation block's small-body size for an invocation, whose larger bodies
stream on the ASGI lane), the path's escapes are valid, and the table's route for it is one of the owned
endpoints — a table narrowed by ``spec.api`` or wrapped by an HTTP pipeline has other endpoints, so with
either the lane claims nothing of what they touch. API logging, tracing and ``spec.metrics.recordErrorCodes``
run in the observed front door only: while any is on, nothing is claimed. Everything the door would refuse
(401, 413, 400) is left to it, so refusals are the door's own.

The claimed request runs the route's endpoint on uvicorn's scope (the door's changes made: cleaned path,
token removed, ``app``), or ``read_state`` directly for a state get (``get_state`` is that call), errors go
through the one error table, and the observed door's metrics are recorded with the same calls
(``DaprMetrics.http_server``, ``invocation_sent``/``invocation_answered``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

import httptools
from starlette.requests import Request
from starlette.responses import Response

from app.errors import render_error
from app.lane.cycle import LaneCycle, Serve
from app.lane.relay import write_response
from app.observability.front import ObservedFrontDoor, _invoked
from app.paths import MalformedPath, check_escapes, clean
from app.routers import invoke, publish, state
from building_blocks.invocation.body import SMALL_BODY

if TYPE_CHECKING:
    from app.lane.protocol import LaneProtocol
    from app.middleware import FrontDoor
    from app.observability.metrics import DaprMetrics

__all__ = ("ApiLane",)

_TOKEN = b"dapr-api-token"
#: Verbs an invocation is claimed for (``HEAD`` answers and ``CONNECT`` stay with the ASGI lane).
_INVOKED_VERBS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class ApiLane:
    """Claims the hot routes of ``door`` (the sidecar's ASGI app) for ``app.lane.protocol.LaneProtocol``."""

    def __init__(self, door: FrontDoor) -> None:
        self.door = door
        self.runtime = door.runtime
        self.app_id = door.runtime.settings.app_id
        self.token = door.token
        self.max_body = door.max_body
        self.observed = isinstance(door, ObservedFrontDoor)
        #: The owned endpoints: how the lane serves each, and whether it is an invocation.
        self._owned: dict[Callable[..., Awaitable[Response]], tuple[Serve, bool]] = {
            state.get_state: (self._read_state, False),
            state.save_state: (self._endpoint(state.save_state), False),
            publish.publish: (self._endpoint(publish.publish), False),
            invoke.invoke: (self._endpoint(invoke.invoke), True),
            invoke.fallback: (self._endpoint(invoke.fallback), True),
        }
        self._measured: dict[Serve, Serve] = {}

    def claim(
        self, protocol: LaneProtocol, method_bytes: bytes, url: bytes, headers: list[tuple[bytes, bytes]]
    ) -> LaneCycle | None:
        runtime = self.runtime
        if not runtime.ready:
            return None  # the door holds API calls until the components are initialised
        metrics: DaprMetrics | None = None
        if self.observed and (observability := runtime.observability) is not None:
            if observability.api_log is not None or observability.tracing is not None:
                return None
            metrics = observability.metrics
            if metrics is not None and metrics.record_error_codes:
                return None  # counted off the error bodies by the observed door only
        length = 0
        for name, value in headers:
            if name == b"content-length":
                if not value.isdigit():
                    return None
                length = int(value)
            elif name == b"transfer-encoding":
                return None
        if length > self.max_body:
            return None
        token = self.token
        if token:
            if (_TOKEN, token) not in headers:
                return None
            headers = [header for header in headers if header[0] != _TOKEN]
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            return None
        path = clean(parsed.path.decode("latin-1"))
        try:
            check_escapes(path)
        except MalformedPath:
            return None
        method = method_bytes.decode("ascii")
        route, params = self.door.routes.match(method, path)
        owned = self._owned.get(route.endpoint)
        if owned is None:
            return None
        serve, invocation = owned
        if invocation and (length > SMALL_BODY or method not in _INVOKED_VERBS):
            return None
        scope: dict[str, Any] = protocol.scope  # type: ignore[assignment]  # uvicorn's TypedDict, extended
        scope.update(  # what uvicorn and then the door would set
            method=method,
            path=path,
            raw_path=path.encode("latin-1"),
            query_string=parsed.query or b"",
            headers=headers,
            app=self.door,
        )
        if metrics is not None:
            serve = self._measured.get(serve) or self._measured.setdefault(serve, _measured(serve, metrics))
        eager = route.endpoint is state.get_state  # reads no body
        return LaneCycle(protocol, scope, params, serve, protocol.parser.should_keep_alive(), eager)

    async def _read_state(self, cycle: LaneCycle) -> None:
        params = cycle.params
        try:
            response = await state.read_state(
                self.runtime, params["store_name"], params["key"], cycle.scope["query_string"]
            )
        except Exception as exc:
            response = render_error(exc, self.app_id)
        await write_response(cycle, response)

    def _endpoint(self, endpoint: Callable[..., Awaitable[Response]]) -> Serve:
        async def serve(cycle: LaneCycle) -> None:
            try:
                response = await endpoint(Request(cycle.scope, cycle.receive), **cycle.params)
            except Exception as exc:
                response = render_error(exc, self.app_id)
            await write_response(cycle, response)

        return serve


def _measured(serve: Serve, metrics: DaprMetrics) -> Serve:
    """``serve``, counted as ``ObservedFrontDoor`` counts a request (from the route's start to its answer)."""

    async def measured(cycle: LaneCycle) -> None:
        started = perf_counter()
        try:
            await serve(cycle)
        finally:
            seconds = perf_counter() - started
            scope = cycle.scope
            path = scope["path"]
            length = next((int(v) for n, v in scope["headers"] if n == b"content-length"), 0)
            metrics.http_server(cycle.method, path, cycle.status, length, cycle.sent, seconds)
            target = _invoked(path)
            if target:
                metrics.invocation_sent(target)
                metrics.invocation_answered(target, cycle.status, seconds)

    return measured
