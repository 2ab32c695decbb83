"""The internal listener's lane: authenticated hops from other sidecars, served below ``HopApp``.

``HopApp.admit`` decides for both lanes (the hop's secret, escapes, an invocation path, the start-up gate,
access control, the invoker): its refusals the lane answers as ``HopApp`` would, and an admitted hop it
serves with ``HopApp.answer`` itself (the invoker, the error table), relayed by ``app.lane.relay``. Only
bodies with a ``Content-Length`` within the invocation block's small-body size are claimed: larger or chunked
ones stream on the ASGI lane, and so do the verbs whose answers it frames differently (``HEAD``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools
from starlette.responses import Response

from app.lane.cycle import LaneCycle
from app.lane.direct import DirectCall, Responded
from app.lane.relay import serve_refusal, write_response
from building_blocks.invocation.body import SMALL_BODY
from building_blocks.invocation.headers import CALLER_ID, first

if TYPE_CHECKING:
    from app.invocation.hop_server import HopApp
    from app.lane.protocol import LaneProtocol

__all__ = ("HopLane",)

_VERBS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class HopLane:
    """Claims the hops ``app`` (the internal listener's ASGI app) admits."""

    def __init__(self, app: HopApp) -> None:
        self.app = app

    def claim(
        self, protocol: LaneProtocol, method_bytes: bytes, url: bytes, headers: list[tuple[bytes, bytes]]
    ) -> LaneCycle | None:
        for name, value in headers:  # framing the lane reads whole: a small Content-Length body, or none
            if (name == b"content-length" and not (value.isdigit() and int(value) <= SMALL_BODY)) or (
                name == b"transfer-encoding"
            ):
                return None
        method = method_bytes.decode("ascii")
        if method not in _VERBS:
            return None
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            return None
        raw_path: bytes | None = parsed.path
        if raw_path is None or not raw_path.isascii():
            return None  # uvicorn's own refusal on the ASGI lane
        path = raw_path.decode("ascii")
        scope: dict[str, Any] = protocol.scope  # type: ignore[assignment]  # uvicorn's TypedDict, extended
        scope["method"] = method  # as uvicorn sets them
        scope["path"] = unquote(path) if "%" in path else path
        scope["raw_path"] = raw_path
        scope["query_string"] = parsed.query or b""
        admitted = self.app.admit(scope)
        if admitted is None:
            return None  # held until the runtime settles: the ASGI lane waits
        if isinstance(admitted, Response):
            refuse = serve_refusal(admitted)
            return LaneCycle(protocol, scope, {}, refuse, protocol.parser.should_keep_alive(), eager=True)
        target, invoked = admitted
        params = {"target": target, "method": invoked}
        cycle = LaneCycle(protocol, scope, params, self._serve, protocol.parser.should_keep_alive())
        cycle.direct = self._direct
        return cycle

    def _direct(self, cycle: LaneCycle) -> bool:
        """The hop delivered from the protocol's callbacks when it can be (``app.lane.direct``), counted as
        ``app.observability.hop.serve_hop`` counts it (traced hops take the general path)."""
        runtime = self.app.runtime
        invoker = runtime.invocation
        observability = runtime.observability
        responded: Responded | None = None
        if invoker is None:
            return False
        if observability is not None:
            if observability.tracing is not None:
                return False
            metrics = observability.metrics
            if metrics is not None:
                caller = first(cycle.scope["headers"], CALLER_ID).decode("latin-1")

                def responded(status: int) -> None:
                    metrics.invocation_received(caller)
                    metrics.invocation_responded(caller, status)

        params = cycle.params
        return DirectCall.start(cycle, invoker, params["target"], params["method"], hop=True, responded=responded)

    async def _serve(self, cycle: LaneCycle) -> None:
        params = cycle.params
        await write_response(
            cycle, await self.app.answer(cycle.scope, cycle.receive, params["target"], params["method"])
        )
