"""The internal listener's lane: authenticated hops from other sidecars, served below ``HopApp``.

Claimed only when ``HopApp`` would go straight to the invoker: the hop's secret is right, the path's escapes
are valid and name an invocation, the runtime is ready, and the body has a ``Content-Length`` within the
invocation block's small-body size (larger or chunked bodies stream on the ASGI lane). Refusals (401, 400,
404) stay ``HopApp``'s. The claimed hop is answered by ``HopApp.answer`` itself (access control, the invoker,
the error table), and its answer is relayed by ``app.lane.relay``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httptools
from starlette.datastructures import Headers

from app.invocation.route import find_target
from app.lane.cycle import LaneCycle
from app.lane.relay import write_response
from app.paths import MalformedPath, check_escapes, clean
from building_blocks.invocation.body import SMALL_BODY

if TYPE_CHECKING:
    from app.invocation.hop_server import HopApp
    from app.lane.protocol import LaneProtocol

__all__ = ("HopLane",)

_PREFIX = "/v1.0/invoke/"
_NO_HEADERS = Headers(raw=[])
_VERBS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class HopLane:
    """Claims the hops ``app`` (the internal listener's ASGI app) would hand to the invoker."""

    def __init__(self, app: HopApp) -> None:
        self.app = app
        self.runtime = app.runtime
        self.security = app.security

    def claim(
        self, protocol: LaneProtocol, method_bytes: bytes, url: bytes, headers: list[tuple[bytes, bytes]]
    ) -> LaneCycle | None:
        runtime = self.runtime
        if not runtime.ready or runtime.invocation is None or not self.security.admits(headers):
            return None
        for name, value in headers:
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
        path = clean(parsed.path.decode("latin-1"))
        if not path.startswith(_PREFIX):
            return None
        try:
            check_escapes(path)
        except MalformedPath:
            return None
        target, invoked = find_target(path, _NO_HEADERS)
        if not target:
            return None
        scope: dict[str, Any] = protocol.scope  # type: ignore[assignment]  # uvicorn's TypedDict, extended
        scope.update(method=method, path=path, raw_path=path.encode("latin-1"), query_string=parsed.query or b"")
        params = {"target": target, "method": invoked}
        return LaneCycle(protocol, scope, params, self._serve, protocol.parser.should_keep_alive())

    async def _serve(self, cycle: LaneCycle) -> None:
        params = cycle.params
        await write_response(
            cycle, await self.app.answer(cycle.scope, cycle.receive, params["target"], params["method"])
        )
