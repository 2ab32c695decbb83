"""Service invocation: one request in, relayed to its target, the target's answer relayed back.

    own app id        -> the local app, through the app channel
    other app id      -> its sidecar (found by the name resolver) on its internal listener (the hop:
                         ``app.invocation.hop_server``), authenticated by the hop's credentials, never by
                         the app's API token; that sidecar delivers to its app
    URL / HTTPEndpoint -> the external service

The caller identity the app sees (``dapr-caller-app-id``, ``dapr-caller-namespace``, ``dapr-callee-app-id``)
is always set by a sidecar: by this one for its own app's calls (``invoke``, whatever the client sent), by
the calling sidecar for hops (``serve_hop``, which only the authenticated internal listener calls).

Bodies stream both ways. The local app and other sidecars are reached over HTTP/1.1 with the lean
keep-alive client of ``app.http_client`` (TLS to other sidecars when the hop uses mutual TLS); HTTPEndpoints
and URLs (possibly https, redirects followed) with httpx (``app.invocation.external``, imported on first
use). Resiliency (``targets.apps.<id>``) wraps every attempt; see ``building_blocks.invocation.policy``.
Failures become ``InvocationFailed`` (500 ``ERR_DIRECT_INVOKE``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from app.app_channel import AppChannel
from app.app_health import AppHealth
from app.errors import error_response
from app.http_client import ConnectError, ConnectTimeout, HttpClient, HttpClientError, request_target
from app.invocation.body import REPLAY_LIMIT, SMALL_BODY, RequestBody
from app.invocation.headers import CALLER_ID, CALLER_NAMESPACE, Headers, first, forwardable, identity, trace_parent
from app.invocation.hop_security import HopSecurity
from app.invocation.relay import Relay, Upstream
from app.settings import Settings
from building_blocks.errors import InvocationFailed, LayottoError
from building_blocks.invocation.endpoints import HttpEndpoint
from building_blocks.invocation.policy import AttemptFailed, run
from building_blocks.invocation.targets import Target, TargetKind, normalize_method, parse_target
from building_blocks.nameresolution.base import Instance, NameResolver
from building_blocks.nameresolution.directory import Directory
from building_blocks.nameresolution.dns import split_address
from building_blocks.resiliency import NO_POLICY, CircuitBreaker, Resiliency, TargetPolicy

if TYPE_CHECKING:
    from app.invocation.external import ExternalClient

__all__ = ("Invoker",)

log = logging.getLogger("layotto.invocation")
#: No overall deadline (Dapr imposes none); connecting must not hang, though.
CONNECT_TIMEOUT = 5.0
MISROUTED = "layotto-misrouted"


def _go_op(verb: str) -> str:
    return verb[:1] + verb[1:].lower()


def _transport_reason(exc: HttpClientError, address: str) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectTimeout):
        return f"dial tcp {address}: i/o timeout"
    if isinstance(exc, ConnectError):
        refused = "refused" in text.lower() or "all connection attempts failed" in text.lower()
        return f"dial tcp {address}: connect: {'connection refused' if refused else text}"
    return text


class Invoker:
    def __init__(
        self,
        settings: Settings,
        resolver: NameResolver,
        resiliency: Resiliency,
        endpoints: Mapping[str, HttpEndpoint],
        channel: AppChannel | None,
        health: AppHealth | None = None,
    ) -> None:
        self.app_id = settings.app_id
        self.namespace = settings.namespace
        self.resolver = resolver
        self.resiliency = resiliency
        self.endpoints = dict(endpoints)
        self.channel = channel
        self.health = health
        #: The hop's credentials; the internal listener checks them too.
        self.security = HopSecurity.from_settings(settings)
        # other sidecars are reached, and this one is advertised, on the internal port
        self.directory = Directory(resolver, settings.internal_port)
        self.instance = Instance(
            settings.app_id, settings.namespace, settings.advertised_host, settings.internal_port if channel else 0
        )
        self.hostname = socket.gethostname()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._peers = HttpClient(connect_timeout=CONNECT_TIMEOUT, tls=self.security.client_tls)
        self._external: ExternalClient | None = None

    async def close(self) -> None:
        """Close the clients; the name resolver is the domain runtime's to close."""
        try:
            await self._peers.aclose()
        finally:
            if self._external is not None:
                await self._external.aclose()

    def _breaker(self, target: str, policy: TargetPolicy) -> CircuitBreaker | None:
        if policy.circuit_breaker is None:
            return None
        breaker = self._breakers.get(target)
        if breaker is None:
            breaker = self._breakers[target] = CircuitBreaker(policy.circuit_breaker)
        return breaker

    async def invoke(self, request: Request, raw_target: str, method: str) -> Response:
        """An invocation from a client of this sidecar (the public API): the identity is set here."""
        method = normalize_method(raw_target, method)
        target = parse_target(raw_target, self.app_id, self.namespace, self.endpoints)
        return await self._invoke(request, raw_target, target, method, self.resiliency.app(raw_target), None)

    async def serve_hop(self, request: Request, raw_target: str, method: str) -> Response:
        """An invocation another sidecar forwards, for this sidecar's app only; its caller is that sidecar's app.

        Called by the internal listener once the hop is authenticated. Resiliency was applied by the calling
        sidecar. A hop meant for another app (a stale registry row) is answered with ``layotto-misrouted``,
        so the caller tries the next instance.
        """
        method = normalize_method(raw_target, method)
        target = parse_target(raw_target, self.app_id, self.namespace, self.endpoints)
        if target.kind is not TargetKind.LOCAL:
            message = f"failed to invoke, id: {raw_target}, err: this sidecar serves app id {self.app_id}"
            response = error_response(500, "ERR_DIRECT_INVOKE", message)
            response.headers[MISROUTED] = "1"
            return response
        headers: Headers = request.scope["headers"]
        caller = identity(first(headers, CALLER_NAMESPACE), first(headers, CALLER_ID), self.app_id.encode())
        return await self._invoke(request, raw_target, target, method, NO_POLICY, caller)

    async def _invoke(
        self,
        request: Request,
        raw_target: str,
        target: Target,
        method: str,
        policy: TargetPolicy,
        caller: Headers | None,
    ) -> Response:
        verb = request.method
        if verb == "CONNECT":
            raise InvocationFailed(raw_target, "rpc error: code = InvalidArgument desc = invalid HTTP verb")
        length = request.headers.get("content-length")
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        body = RequestBody(request.stream(), int(length) if length and length.isdigit() else None, chunked)
        retried = policy.retry is not None and policy.retry.max_retries != 0
        await body.buffer(REPLAY_LIMIT if retried else SMALL_BODY)
        query: bytes = request.scope["query_string"]
        attempt = self._attempt(target, verb, method, query, request.scope["headers"], body, caller)
        try:
            upstream = await run(
                raw_target,
                policy,
                self._breaker(raw_target, policy),
                attempt,
                lambda: body.replayable,
                built_in=target.kind is TargetKind.REMOTE and policy is NO_POLICY,
            )
        except AttemptFailed as failure:
            raise InvocationFailed(raw_target, failure.reason) from None
        return Relay(upstream)

    def _attempt(
        self,
        target: Target,
        verb: str,
        method: str,
        query: bytes,
        headers: Headers,
        body: RequestBody,
        caller: Headers | None,
    ) -> Callable[[], Awaitable[Upstream]]:
        """One attempt's call; ``caller``: the identity a hop brought (``None``: this sidecar's app calls)."""
        trace = [(b"traceparent", trace_parent(headers))]
        if target.kind is TargetKind.LOCAL:
            out = forwardable(headers) + (caller or self._identity(self.app_id)) + trace
            return lambda: self._local(verb, method, query, out, body)
        if target.kind is TargetKind.REMOTE:
            out = forwardable(headers) + self._identity(target.app_id) + self._forwarded() + trace
            out += self.security.headers()
            return lambda: self._remote(target, verb, method, query, out, body)
        replaced = {name.lower().encode() for name, _ in target.headers}
        out = [h for h in forwardable(headers) if h[0] not in replaced] + trace
        out += [(name.encode(), value.encode()) for name, value in target.headers]
        return lambda: self._external_call(target, verb, method, query, out, body)

    def _identity(self, callee: str) -> Headers:
        return identity(self.namespace.encode(), self.app_id.encode(), callee.encode())

    def _forwarded(self) -> Headers:
        host = self.instance.host
        by = f'"[{host}]"' if ":" in host else host
        return [
            (b"x-forwarded-for", host.encode()),
            (b"x-forwarded-host", self.hostname.encode()),
            (b"forwarded", f"for={by};by={by};host={self.hostname}".encode()),
        ]

    @staticmethod
    async def _classify(response: Upstream, body: RequestBody) -> Upstream:
        """2xx/3xx pass; an error answer is a failed attempt, buffered when the request may be retried."""
        status = response.status_code
        if 200 <= status < 400:
            return response
        reason = f"received non-successful status code in response: {status}"
        if not body.replayable:
            raise AttemptFailed(reason, status=status, result=response, permanent=True)
        try:
            await response.aread()
        finally:
            await response.aclose()
        raise AttemptFailed(reason, status=status, result=response)

    @staticmethod
    def _failed(verb: str, url: object, exc: HttpClientError, address: str) -> AttemptFailed:
        """Local app or external service: transport errors are reported as Go's ``url.Error`` would."""
        return AttemptFailed(f'{_go_op(verb)} "{url}": {_transport_reason(exc, address)}')

    async def _local(self, verb: str, method: str, query: bytes, headers: Headers, body: RequestBody) -> Upstream:
        channel = self.channel
        if channel is None:
            raise AttemptFailed("cannot invoke local endpoint: app channel not initialized", permanent=True)
        if self.health is not None and not self.health.healthy:
            raise AttemptFailed("rpc error: code = Internal desc = app is not in a healthy state")
        target = channel.target(method, query)
        content: bytes | AsyncIterable[bytes] = body.content()
        try:
            response = await channel.send(verb, target, headers, content, body.length)
        except HttpClientError as exc:
            raise self._failed(verb, channel.url(target), exc, f"{channel.address}:{channel.port}") from None
        return await self._classify(response, body)

    async def _external_call(
        self, target: Target, verb: str, method: str, query: bytes, headers: Headers, body: RequestBody
    ) -> Upstream:
        if self._external is None:
            from app.invocation.external import ExternalClient

            self._external = ExternalClient()
        url = self._external.url(target.base_url, method, query)
        try:
            response = await self._external.send(verb, url, headers, body)
        except HttpClientError as exc:
            address = f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"
            raise self._failed(verb, url, exc, address) from None
        return await self._classify(response, body)

    async def _remote(
        self, target: Target, verb: str, method: str, query: bytes, headers: Headers, body: RequestBody
    ) -> Upstream:
        try:
            candidates = await self.directory.candidates(target.app_id, target.namespace)
        except LayottoError as exc:
            raise AttemptFailed(str(exc)) from None
        app = f"{target.app_id}.{target.namespace}" if target.namespace else target.app_id
        # Escaped so that the callee's one unescape gives back this very method (``%`` and all).
        path = request_target(f"/v1.0/invoke/{quote(app, safe='')}/method/{quote(method, safe='/')}", query)
        reason = ""
        for address in candidates:
            host, port = split_address(address)
            try:
                response = await self._peers.request(verb, host, port, path, headers, body.content(), body.length)
            except HttpClientError as exc:
                self.directory.failed(address)
                reason = f"connection error: {_transport_reason(exc, address)}"
                log.info("sidecar of %s at %s failed: %s", target.app_id, address, reason)
                if isinstance(exc, ConnectError) and body.replayable:
                    continue  # nothing was sent: try the next instance now
                raise AttemptFailed(reason, unavailable=True) from None
            if response.header(MISROUTED):
                await response.aclose()
                self.directory.failed(address)
                reason = f"the sidecar at {address} no longer serves {target.app_id}"
                if body.replayable:
                    continue
                raise AttemptFailed(reason, unavailable=True)
            self.directory.succeeded(address)
            return await self._classify(response, body)
        raise AttemptFailed(reason, unavailable=True)
