"""The API port's lane: state get and save, publish and service invocation, served by the very endpoints the
ASGI app runs, after the very checks it makes.

The front door's ``admit`` decides for both lanes (cleaned path, API token, body limits, escapes, the
start-up gate, the route): its refusals (401, 413, 400) the lane answers as the door would, and an admitted
request it claims when the route is one of the owned endpoints and its body has a ``Content-Length`` (within
the invocation block's small-body size for an invocation, whose larger bodies stream on the ASGI lane). A
table narrowed by ``spec.api`` or wrapped by an HTTP pipeline has other endpoints, so the lane claims nothing
of what they touch. What the door observes around the route only (API logging, tracing,
``spec.metrics.recordErrorCodes``) keeps every request on the ASGI lane while it is on
(``FrontDoor.lane_metrics``); metrics are counted with the door's own call (``count_request``).

The claimed request runs the route's endpoint on uvicorn's scope as the door completed it, or ``read_state``
directly for a state get (``get_state`` is that call), and errors go through the one error table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

import httptools
from starlette.requests import Request
from starlette.responses import Response

from app.errors import render_error
from app.invocation.route import find_target
from app.lane.cycle import LaneCycle, Serve
from app.lane.direct import DirectCall
from app.lane.relay import serve_refusal, write_response
from app.middleware import UNKNOWN_LENGTH
from app.observability.front import count_request
from app.routers import invoke, publish, state
from building_blocks.invocation.body import SMALL_BODY
from building_blocks.state.base import GetResponse

if TYPE_CHECKING:
    from app.lane.protocol import LaneProtocol
    from app.middleware import FrontDoor
    from app.observability.metrics import DaprMetrics

__all__ = ("ApiLane",)

#: Verbs an invocation is claimed for (``HEAD`` answers and ``CONNECT`` stay with the ASGI lane).
_INVOKED_VERBS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class ApiLane:
    """Claims the hot routes of ``door`` (the sidecar's ASGI app) for ``app.lane.protocol.LaneProtocol``."""

    def __init__(self, door: FrontDoor) -> None:
        self.door = door
        self.runtime = door.runtime
        self.app_id = door.runtime.settings.app_id
        #: The owned endpoints: how the lane serves each, and whether it is an invocation.
        self._owned: dict[Callable[..., Awaitable[Response]], tuple[Serve, bool]] = {
            state.get_state: (self._read_state, False),
            state.save_state: (self._endpoint(state.save_state), False),
            publish.publish: (self._endpoint(publish.publish), False),
            invoke.invoke: (self._endpoint(invoke.invoke), True),
            invoke.fallback: (self._endpoint(invoke.fallback), True),
        }
        self._measured: dict[Serve, Serve] = {}
        self._directs: dict[int, Callable[[LaneCycle], bool]] = {}
        self._reads: dict[int, Callable[[LaneCycle], bool]] = {}

    def claim(
        self, protocol: LaneProtocol, method_bytes: bytes, url: bytes, headers: list[tuple[bytes, bytes]]
    ) -> LaneCycle | None:
        door = self.door
        plain, metrics = door.lane_metrics()
        if not plain:
            return None
        raw_path: bytes | None
        if url[:1] == b"/" and b"?" not in url and b"#" not in url:  # a path alone: what the URL parser gives
            raw_path, query = url, b""
        else:
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                return None
            raw_path, query = parsed.path, parsed.query or b""
        if raw_path is None or not raw_path.isascii():
            return None  # uvicorn's own refusal on the ASGI lane
        scope: dict[str, Any] = protocol.scope  # type: ignore[assignment]  # uvicorn's TypedDict, extended
        method = scope["method"] = method_bytes.decode("ascii")  # what uvicorn would set, then the door
        scope["raw_path"] = raw_path
        scope["query_string"] = query
        admitted = door.admit(scope)
        if admitted is None:
            return None  # held until the runtime settles: the ASGI lane waits
        keep_alive = protocol.parser.should_keep_alive()
        if isinstance(admitted, Response):  # the door's refusal
            refuse = serve_refusal(admitted)
            return LaneCycle(
                protocol, scope, {}, _measured(refuse, metrics) if metrics is not None else refuse, keep_alive, True
            )
        route, params, length = admitted
        owned = self._owned.get(route.endpoint)
        if owned is None or length == UNKNOWN_LENGTH:
            scope["headers"] = headers  # as uvicorn made them: the door checks them again
            return None
        serve, invocation = owned
        if invocation and (length > SMALL_BODY or method not in _INVOKED_VERBS):
            scope["headers"] = headers
            return None
        if metrics is not None:
            serve = self._measured.get(serve) or self._measured.setdefault(serve, _measured(serve, metrics))
        eager = route.endpoint is state.get_state  # reads no body
        cycle = LaneCycle(protocol, scope, params, serve, keep_alive, eager)
        if invocation:
            cycle.direct = self._directs.get(id(metrics)) or self._directs.setdefault(
                id(metrics), self._direct(metrics)
            )
        elif eager:
            cycle.direct = self._reads.get(id(metrics)) or self._reads.setdefault(id(metrics), self._read_now(metrics))
        return cycle

    def _read_now(self, metrics: DaprMetrics | None) -> Callable[[LaneCycle], bool]:
        """A state get made from the protocol's callbacks when the store can (``StateBlock.get_now``), answered
        and counted as ``_read_state`` answers it under ``_measured``; with query parameters (consistency,
        metadata) it is ``_read_state``'s."""
        runtime, app_id = self.runtime, self.app_id

        def read_now(cycle: LaneCycle) -> bool:
            scope = cycle.scope
            if scope["query_string"]:
                return False
            started = perf_counter()

            def reply(outcome: GetResponse | Exception | None) -> None:
                try:
                    if isinstance(outcome, Exception):
                        error = render_error(outcome, app_id)
                        cycle.respond(error.status_code, error.raw_headers, bytes(error.body))
                    else:
                        status, body, headers = state.item_answer(outcome)
                        if outcome is None or outcome.etag is None or outcome.etag.isdigit():
                            cycle.relay(status, headers, body)  # headers made here: nothing to check
                        else:  # a store's etag of any text: checked as any answer's headers are
                            headers.append((b"content-length", b"%d" % len(body)))
                            cycle.respond(status, headers, body)
                except Exception as exc:  # as ``LaneCycle.run`` ends a route that fails
                    cycle.fail(exc)
                if metrics is not None:
                    count_request(metrics, scope, cycle.status, cycle.sent, perf_counter() - started)

            params = cycle.params
            return runtime.state.get_now(params["store_name"], params["key"], reply, partial(cycle.spawn, cycle.serve))

        return read_now

    def _direct(self, metrics: DaprMetrics | None) -> Callable[[LaneCycle], bool]:
        """An invocation made from the protocol's callbacks when it can be (``app.lane.direct``)."""
        runtime = self.runtime

        def direct(cycle: LaneCycle) -> bool:
            invoker = runtime.invocation
            if invoker is None:
                return False
            scope = cycle.scope
            try:
                app_id, method = find_target(scope["path"], scope["headers"])
            except Exception:  # what the general path reports
                return False
            return bool(app_id) and DirectCall.start(cycle, invoker, app_id, method, metrics)

        return direct

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
            count_request(metrics, cycle.scope, cycle.status, cycle.sent, perf_counter() - started)

    return measured
