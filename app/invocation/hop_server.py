"""The internal listener: where other sidecars deliver invocations for this sidecar's app (the hop).

Dapr's sidecars talk to each other on a port of their own (``--dapr-internal-grpc-port``), never on the
API port the app uses; so do these, over HTTP/1.1: ``<VERB> /v1.0/invoke/<app-id>/method/<method>`` with
the caller's identity in ``dapr-caller-app-id`` / ``dapr-caller-namespace`` (set by the calling sidecar)
and the hop's credentials (``app.invocation.hop_security``). A hop without them is refused (401; a client
certificate the CA did not sign fails the TLS handshake), and nothing else of the API is reachable here:
the public port, in turn, never trusts identity headers (``Invoker.invoke``).

The listener is a second uvicorn server in the sidecar's event loop, on the API's listen address, with
no lifespan of its own (the API server's runs the runtime). Its socket is bound before the runtime starts,
so the name resolver advertises the port actually bound (``0`` = a free one).
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import uvicorn
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.errors import error_response, render_error
from app.governance.access_control import denied
from app.http_server import hop_protocol
from app.invocation.hop_security import HopSecurity
from app.invocation.route import find_target
from app.middleware import plain_response
from app.observability.hop import serve_hop
from app.paths import MalformedPath, check_escapes, clean
from app.settings import Settings
from building_blocks.invocation.headers import caller_of

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("HopAdmitted", "HopApp", "bind_internal", "internal_config")

log = logging.getLogger("layotto.invocation")
_PREFIX = "/v1.0/invoke/"
_NO_HEADERS = Headers(raw=[])


_INVALID_TOKEN = plain_response(401, b"invalid internal token\n")
_NOT_FOUND = plain_response(404, b"not found: the internal port serves sidecar-to-sidecar invocations only\n")
_NOT_READY = error_response(500, "ERR_DIRECT_INVOKE", "invoke API is not ready")


#: An admitted hop: the app id it addressed, the method it invokes, and its caller's namespace and app id as
#: sent (``caller_of``: found once, for the lane and the invocation block too).
HopAdmitted = tuple[str, str, tuple[bytes, bytes]]
#: How many hop paths keep what they address (bounded: paths come from other sidecars' clients).
_PATHS_KEPT = 1024


class HopApp:
    """ASGI app of the internal listener: authenticated hops to this sidecar's app, nothing else."""

    def __init__(self, runtime: Runtime, security: HopSecurity) -> None:
        self.runtime = runtime
        self.security = security
        #: Per raw path: the target and method it addresses, or the refusal (a pure function of the path).
        self._paths: dict[bytes, tuple[str, str] | Response] = {}

    def admit(self, scope: Scope, hold: bool = True) -> HopAdmitted | Response | None:
        """Everything decided before a hop reaches the invoker, the one copy both lanes run (``app.lane.hop``
        too): the ``HopAdmitted`` target, or the refusal to answer, or ``None`` while the runtime starts
        (``hold``: wait for it to settle, then admit with ``hold=False``). ``scope`` needs ``method``,
        ``headers`` and the still-encoded ``raw_path``."""
        headers = scope["headers"]
        if not self.security.admits(headers):
            return _INVALID_TOKEN
        raw_path = scope["raw_path"]
        addressed = self._paths.get(raw_path) or self._address(raw_path)
        if isinstance(addressed, Response):
            return addressed
        target, method = addressed
        runtime = self.runtime
        if hold and not runtime.core.ready:  # (no property call)
            return None
        # The caller's identity: set by its sidecar, trusted once the hop is admitted.
        found = caller_of(headers)  # (no generator to decode them: 1.1 µs -> 0.9 µs)
        namespace, caller = found
        verb = scope["method"]
        refusal = denied(runtime, caller.decode("latin-1"), namespace.decode("latin-1"), target, method, verb)
        if refusal is not None:
            return refusal
        if runtime.invocation is None:
            return _NOT_READY
        return target, method, found

    def _address(self, raw_path: bytes) -> tuple[str, str] | Response:
        """What ``raw_path`` addresses (the path routed encoded and unescaped once, as on the API port), or
        the refusal of a path that is malformed or not an invocation; remembered."""
        path = clean(raw_path.decode("latin-1"))
        addressed: tuple[str, str] | Response
        try:
            check_escapes(path)
        except MalformedPath as exc:
            addressed = plain_response(400, exc.message.encode() + b"\n")
        else:
            target, method = find_target(path, _NO_HEADERS) if path.startswith(_PREFIX) else ("", "")
            addressed = (target, method) if target else _NOT_FOUND
        if len(self._paths) >= _PATHS_KEPT:
            self._paths.clear()
        self._paths[raw_path] = addressed
        return addressed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan, no websockets here
        admitted = self.admit(scope)
        if admitted is None:
            await self.runtime.wait_settled()
            admitted = self.admit(scope, hold=False)
            assert admitted is not None
        if isinstance(admitted, Response):
            response = admitted  # a refusal
        else:
            response = await self.answer(scope, receive, admitted[0], admitted[1])
        await response(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive, target: str, method: str) -> Response:
        """The invoker's answer to an admitted hop for ``target``'s ``method`` (the protocol lane calls this too)."""
        runtime = self.runtime
        invoker = runtime.invocation
        assert invoker is not None, "admitted"
        try:
            return await serve_hop(runtime, invoker.serve_hop, Request(scope, receive), target, method)
        except Exception as exc:
            return render_error(exc, runtime.settings.app_id)


def bind_internal(settings: Settings) -> socket.socket:
    """The internal listener's socket on the API's listen address (``OSError`` when the port is taken)."""
    host = settings.listen_address.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, settings.internal_port), family=family)


def internal_config(settings: Settings, runtime: Runtime) -> uvicorn.Config:
    """uvicorn's configuration for the internal listener (serve it on the socket of ``bind_internal``)."""
    invoker = runtime.invocation
    assert invoker is not None, "the runtime is prepared first"
    security = invoker.security
    server_tls = security.server_tls
    how = " and ".join(name for name, on in (("hop secret", security.token), ("mutual TLS", server_tls)) if on)
    log.info("internal port for other sidecars: %d (%s)", settings.internal_port, how)
    app = HopApp(runtime, security)
    return uvicorn.Config(
        app,
        http=hop_protocol(settings, app),  # unauthenticated heads are bounded here too
        ws="none",
        timeout_keep_alive=600,  # as the public port: closing an idle connection races a peer reusing it
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
        proxy_headers=False,
        server_header=False,
        ssl_context_factory=(lambda config, default: server_tls) if server_tls is not None else None,
    )
