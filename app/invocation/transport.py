"""The invocation block's transport over HTTP/1.1: the app channel, other sidecars' internal listeners, and
external services, with each client's failures worded as Go's ``url.Error`` (what daprd reports).

The local app and other sidecars are reached with the lean keep-alive client of ``app.http_client`` (TLS to
other sidecars when the hop uses mutual TLS); HTTPEndpoints and URLs (possibly https, redirects followed)
with httpx (``app.invocation.external``, imported on first use).
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import TYPE_CHECKING

from app.app_channel import AppChannel
from app.http_client import ConnectError, ConnectTimeout, Exchange, HttpClient, HttpClientError, request_target
from app.invocation.hop_security import HopSecurity
from app.invocation.relay import Upstream
from building_blocks.invocation.base import TransportFailed
from building_blocks.invocation.block import Direct
from building_blocks.invocation.body import SMALL_BODY, RequestBody
from building_blocks.invocation.headers import Headers
from building_blocks.invocation.targets import Target
from building_blocks.nameresolution.dns import split_address

if TYPE_CHECKING:
    from app.invocation.external import ExternalClient

__all__ = ("HttpTransport",)

#: No overall deadline (Dapr imposes none); connecting must not hang, though.
CONNECT_TIMEOUT = 5.0
#: How many hop paths and sidecar addresses keep their parsed form (methods come from clients: bounded).
_TARGETS_KEPT = 1024
#: What marks a gRPC ``InvokeService`` sent without a verb (``app.grpc.dapr.invoke``): daprd's HTTP channel
#: refuses such a call, and so does this one when it comes over the hop.
_WITHOUT_VERB = b"layotto-http-extension"


def _go_op(verb: str) -> str:
    return verb[:1] + verb[1:].lower()


def _reason(exc: HttpClientError, address: str) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectTimeout):
        return f"dial tcp {address}: i/o timeout"
    if isinstance(exc, ConnectError):
        refused = "refused" in text.lower() or "all connection attempts failed" in text.lower()
        return f"dial tcp {address}: connect: {'connection refused' if refused else text}"
    return text


def _url_error(verb: str, url: object, exc: HttpClientError, address: str) -> TransportFailed:
    return TransportFailed(f'{_go_op(verb)} "{url}": {_reason(exc, address)}', isinstance(exc, ConnectError))


class HttpTransport:
    """Carries the invocation block's calls over HTTP/1.1 (``building_blocks.invocation.base.Transport``)."""

    def __init__(self, channel: AppChannel | None, security: HopSecurity) -> None:
        self.channel = channel
        self.has_app = channel is not None
        self.security = security
        self._peers = HttpClient(connect_timeout=CONNECT_TIMEOUT, tls=security.client_tls)
        self._external: ExternalClient | None = None
        self._addresses: dict[str, tuple[str, int]] = {}
        self._targets: dict[str, bytes] = {}
        self._methods: dict[str, bytes] = {}
        self._hop_headers: tuple[HopSecurity, Headers] | None = None

    async def close(self) -> None:
        try:
            await self._peers.aclose()
        finally:
            if self._external is not None:
                await self._external.aclose()

    def hop_headers(self) -> Headers:
        """The hop's credentials, made once per ``security`` (a call's headers are copied from them, never
        changed in place)."""
        security = self.security
        made = self._hop_headers
        if made is None or made[0] is not security:
            made = self._hop_headers = (security, security.headers())
        return made[1]

    async def app(self, verb: str, method: str, query: bytes, headers: Headers, body: RequestBody) -> Upstream:
        channel = self.channel
        assert channel is not None, "the block checks has_app first"
        if channel.needs_verb:
            for name, value in headers:
                if name == _WITHOUT_VERB:  # InvokeService without a verb, over the hop: HTTP has none to send
                    refusal = "invalid HTTP verb" if value == b"none" else "missing HTTP extension field"
                    raise TransportFailed(f"rpc error: code = InvalidArgument desc = {refusal}")
        encoded = self._app_target(channel, method)
        target = encoded + b"?" + query if query else encoded
        content: bytes | AsyncIterable[bytes] = body.content()
        try:
            return await channel.send(verb, target, headers, content, body.length)
        except HttpClientError as exc:
            raise _url_error(verb, channel.url(target), exc, f"{channel.address}:{channel.port}") from None

    def direct(self, plan: Direct, verb: str, query: bytes, body: bytes, exchange: Exchange) -> bytes | None:
        """Sends ``plan``'s attempt (``InvocationBlock.direct``) on an idle connection, ``exchange`` hearing of the
        answer (``HttpClient.exchange``): the request target sent, or ``None`` when nothing was sent (no idle
        connection, or a call the app channel makes otherwise)."""
        if plan.address:
            where = self._address(plan.address)
            encoded = self._peer_target(plan.path)
            target = encoded + b"?" + query if query else encoded
            sent = self._peers.exchange(verb, *where, target, plan.headers, body, exchange, SMALL_BODY)
            return target if sent else None
        channel = self.channel
        if channel is None or not channel.exchanges:
            return None
        if channel.needs_verb:
            for name, _ in plan.headers:
                if name == _WITHOUT_VERB:
                    return None  # ``app`` refuses it
        encoded = self._app_target(channel, plan.method)
        target = encoded + b"?" + query if query else encoded
        return target if channel.exchange(verb, target, plan.headers, body, exchange) else None

    def app_failure(self, verb: str, target: bytes, error: HttpClientError) -> str:
        """What ``app`` reports when the exchange with the app broke before its answer (Go's ``url.Error``)."""
        channel = self.channel
        assert channel is not None
        return _url_error(verb, channel.url(target), error, f"{channel.address}:{channel.port}").reason

    def _app_target(self, channel: AppChannel, method: str) -> bytes:
        encoded = self._methods.get(method)
        if encoded is None:
            if len(self._methods) >= _TARGETS_KEPT:
                self._methods.clear()
            encoded = self._methods[method] = channel.target(method)
        return encoded

    def _address(self, address: str) -> tuple[str, int]:
        where = self._addresses.get(address)
        if where is None:
            if len(self._addresses) >= _TARGETS_KEPT:
                self._addresses.clear()
            where = self._addresses[address] = split_address(address)
        return where

    def _peer_target(self, path: str) -> bytes:
        encoded = self._targets.get(path)
        if encoded is None:
            if len(self._targets) >= _TARGETS_KEPT:
                self._targets.clear()
            encoded = self._targets[path] = request_target(path)
        return encoded

    async def peer(
        self, address: str, verb: str, path: str, query: bytes, headers: Headers, body: RequestBody
    ) -> Upstream:
        where = self._address(address)
        encoded = self._peer_target(path)
        try:
            return await self._peers.request(
                verb, *where, encoded + b"?" + query if query else encoded, headers, body.content(), body.length
            )
        except HttpClientError as exc:
            raise TransportFailed(_reason(exc, address), isinstance(exc, ConnectError)) from None

    async def external(
        self, target: Target, verb: str, method: str, query: bytes, headers: Headers, body: RequestBody
    ) -> Upstream:
        if self._external is None:
            from app.invocation.external import ExternalClient

            self._external = ExternalClient()
        url = self._external.url(target.base_url, method, query)
        try:
            return await self._external.send(verb, url, headers, body)
        except HttpClientError as exc:
            address = f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"
            raise _url_error(verb, url, exc, address) from None
