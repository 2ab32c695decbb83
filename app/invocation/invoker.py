"""Service invocation on the HTTP front: a request in, the invocation block, the target's answer relayed back.

The block (``building_blocks.invocation.block``) decides where the call goes, who it says it comes from and
how often it is tried; this adapter turns a starlette request into its ``Call`` (the body streamed, not
read), carries it over ``HttpTransport`` and relays the answer as it arrives (``Relay``).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from app.app_channel import AppChannel
from app.app_health import AppHealth
from app.errors import error_response
from app.invocation.hop_security import HopSecurity
from app.invocation.relay import Relay, Upstream
from app.invocation.transport import HttpTransport
from app.settings import Settings
from building_blocks.errors import InvocationFailed
from building_blocks.invocation.base import MISROUTED, SIDECAR_ERROR, Call
from building_blocks.invocation.block import InvocationBlock, Misrouted
from building_blocks.invocation.body import RequestBody
from building_blocks.invocation.endpoints import HttpEndpoint

__all__ = ("Invoker", "call_of")


def call_of(request: Request) -> Call:
    """The block's view of ``request``: its body is streamed to the target as it arrives."""
    scope = request.scope
    headers = scope["headers"]
    announced: bytes | None = None
    coding: bytes | None = None
    for name, value in headers:  # the raw list: cheaper than building ``request.headers`` for two lookups
        if name == b"content-length" and announced is None:
            announced = value
        elif name == b"transfer-encoding" and coding is None:
            coding = value
    length = int(announced) if announced is not None and announced.isdigit() else None
    chunked = coding is not None and b"chunked" in coding.lower()
    return Call(scope["method"], "", scope["query_string"], headers, RequestBody(request.stream(), length, chunked))


class Invoker:
    """The invocation block bound to its HTTP transport."""

    def __init__(
        self,
        settings: Settings,
        block: InvocationBlock[Upstream],
        channel: AppChannel | None,
        health: AppHealth | None = None,
    ) -> None:
        self.block = block
        #: The hop's credentials; the internal listener checks them too.
        self.security = HopSecurity.from_settings(settings)
        self.transport = HttpTransport(channel, self.security)
        block.bind(self.transport, (lambda: health.healthy) if health is not None else None)

    @property
    def endpoints(self) -> Mapping[str, HttpEndpoint]:
        return self.block.endpoints

    async def close(self) -> None:
        """Close the clients; the name resolver is the domain runtime's to close."""
        await self.transport.close()

    async def invoke(self, request: Request, raw_target: str, method: str) -> Response:
        """An invocation from a client of this sidecar (the public API)."""
        return Relay(await self.block.invoke(raw_target, method, call_of(request)))

    async def serve_hop(self, request: Request, raw_target: str, method: str) -> Response:
        """An invocation another sidecar forwards (the internal listener calls this once it is authenticated)."""
        try:
            upstream = await self.block.serve_hop(raw_target, method, call_of(request))
        except Misrouted as exc:
            response = error_response(500, "ERR_DIRECT_INVOKE", str(exc))
            response.headers[MISROUTED] = "1"
            return response
        except InvocationFailed as exc:  # this sidecar's failure to deliver, not an answer of its app
            response = error_response(500, "ERR_DIRECT_INVOKE", str(exc))
            response.headers[SIDECAR_ERROR] = "1"
            return response
        return Relay(upstream)
