"""The gRPC server: Dapr's API and Layotto's ``Runtime`` service on ``--dapr-grpc-port``, on the HTTP front's
listen addresses, in the sidecar's event loop (grpcio's asyncio server).

Options as daprd's server: messages up to ``--max-body-size`` each way, request metadata up to
``--read-buffer-size``; keepalive pings from clients accepted every 8 s even without calls (grpc core would
otherwise answer the SDKs' pings with GOAWAY ``too_many_pings``), a ping every 10 s towards idle clients,
idle connections closed after 3 minutes. The health service (``grpc.health.v1``) reports SERVING once the
components are initialised, as ``/v1.0/healthz`` answers 204.

The services are built at the first call that asks for one (``_Deferred``, ``_Health``): their servicers,
the generated protobuf modules (Dapr's whole API, Layotto's, google.rpc's) and protobuf itself stay out of a
sidecar no gRPC client called: the embedded default's idle RSS 59.5 -> 53.6 MB (Python's heap and arenas
28.1 -> 22.6 MB), start-up 40 ms of CPU less (more on a busy machine). The first call pays for the imports
once: the first Dapr or Layotto call 60-170 ms more on the 2-core machine (then as before), the first health
check 25-35 ms more (and 2 MB: protobuf and the health service only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, cast

import grpc

from app.grpc.hop_tickets import TicketDesk

if TYPE_CHECKING:
    from google.protobuf.descriptor import ServiceDescriptor
    from grpc_health.v1.health import aio as health_aio

    from app.grpc.proxy import ProxyHandler
    from app.runtime import Runtime

__all__ = ("GrpcFront",)

log = logging.getLogger("layotto.grpc")
#: Seconds calls in flight (streams included) get to finish when the sidecar stops.
STOP_GRACE = 1.0
_ALL_INTERFACES = ("", "0.0.0.0", "::", "[::]")


def _options(runtime: Runtime) -> list[tuple[str, int]]:
    settings = runtime.settings
    return [
        ("grpc.max_receive_message_length", settings.max_body_size),
        ("grpc.max_send_message_length", settings.max_body_size),
        ("grpc.max_metadata_size", settings.read_buffer_size + 4096),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 8000),
        ("grpc.http2.min_ping_interval_without_data_ms", 8000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.keepalive_time_ms", 10000),
        ("grpc.keepalive_timeout_ms", 5000),
        ("grpc.max_connection_idle_ms", 180000),
        ("grpc.so_reuseport", 0),  # a taken port fails start-up instead of sharing it
    ]


def _addresses(listen: str, port: int) -> list[str]:
    hosts = [host.strip() for host in listen.split(",") if host.strip()] or [""]
    if any(host in _ALL_INTERFACES for host in hosts):
        return [f"[::]:{port}"]
    return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host in hosts]


def _tickets(runtime: Runtime) -> TicketDesk:
    """Tickets for streams other sidecars proxy to this sidecar's app (``app.grpc.hop_tickets``), given to a
    gRPC app's channel now: the hop asks for them before any call reaches this front."""
    settings = runtime.settings
    host = settings.advertised_host
    tickets = TicketDesk(f"[{host}]:{settings.grpc_port}" if ":" in host else f"{host}:{settings.grpc_port}")
    if not settings.grpc_port or settings.unix_socket("grpc") is not None:
        tickets.address = ""  # no TCP port other sidecars could open a stream to
    if settings.app_protocol == "grpc":  # the runtime's channel is then a GrpcAppChannel (module loaded)
        from app.grpc.app_channel import GrpcAppChannel

        if isinstance(runtime.app_channel, GrpcAppChannel):
            runtime.app_channel.tickets = tickets
    return tickets


class _Health(grpc.GenericRpcHandler):
    """``grpc.health.v1``, its servicer made at the first health call with the status reported so far.

    Served as a generic handler only, as the Dapr service is: the generated ``add_HealthServicer_to_server``
    also registers its methods with grpc core, and then grpcio's accept loop keeps one pending call per
    registered method beside the generic one and waits on all of them (``asyncio.wait``) on every call of
    every service: 4 futures instead of 1, about 3 us per call.
    """

    def __init__(self) -> None:
        self.serving = False
        self.shut_down = False
        self._servicer: health_aio.HealthServicer | None = None
        self._handler: grpc.GenericRpcHandler | None = None

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        if not handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return None
        if self._handler is None:
            self._handler = self._load()
        return self._handler.service(handler_call_details)

    def _load(self) -> grpc.GenericRpcHandler:
        from google.protobuf.message_factory import GetMessageClass
        from grpc_health.v1 import health_pb2

        service = cast("ServiceDescriptor", health_pb2.DESCRIPTOR.services_by_name["Health"])
        handlers = {}
        for method in service.methods:
            request, response = GetMessageClass(method.input_type), GetMessageClass(method.output_type)
            streamed = method.server_streaming
            make = grpc.unary_stream_rpc_method_handler if streamed else grpc.unary_unary_rpc_method_handler
            handlers[method.name] = make(
                self._method(method.name),
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )
        return grpc.method_handlers_generic_handler(service.full_name, handlers)

    def _method(self, name: str) -> Any:
        async def call(request: Any, context: Any) -> Any:
            return await getattr(await self._ready(), name)(request, context)

        return call

    async def _ready(self) -> health_aio.HealthServicer:
        if self._servicer is None:
            from grpc_health.v1 import health, health_pb2

            servicer = health.aio.HealthServicer()
            status = (
                health_pb2.HealthCheckResponse.SERVING if self.serving else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            await servicer.set("", status)  # no watcher yet: returns without suspending
            if self.shut_down:
                await servicer.enter_graceful_shutdown()
            if self._servicer is None:
                self._servicer = servicer
        return self._servicer

    async def report(self, serving: bool) -> None:
        if self.shut_down:
            return
        self.serving = serving
        if self._servicer is not None:
            from grpc_health.v1 import health_pb2

            status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
            await self._servicer.set("", status)

    async def enter_graceful_shutdown(self) -> None:
        self.shut_down = True
        if self._servicer is not None:
            await self._servicer.enter_graceful_shutdown()


class _Deferred(grpc.GenericRpcHandler):
    """Dapr's and Layotto's services, then the proxy for what neither claims, built at the first call."""

    def __init__(self, runtime: Runtime, tickets: TicketDesk) -> None:
        self.runtime = runtime
        self.tickets = tickets
        self.proxy: ProxyHandler | None = None
        self._handlers: tuple[grpc.GenericRpcHandler, ...] = ()

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        handlers = self._handlers or self._load()
        for handler in handlers:
            found = handler.service(handler_call_details)
            if found is not None:
                return found
        return None

    def _load(self) -> tuple[grpc.GenericRpcHandler, ...]:
        from app.grpc.dapr import service as dapr
        from app.grpc.layotto import service as layotto
        from app.grpc.proxy import ProxyHandler

        servicer, served = dapr.serve(self.runtime)
        self.proxy = ProxyHandler(self.runtime, self.tickets)
        # Layotto's Runtime service on the same port, as Layotto; the proxy last: what no service claimed
        self._handlers = (served, layotto.serve(self.runtime, servicer), self.proxy)
        return self._handlers


class GrpcFront:
    """Started by the runtime once its core starts; ``port`` is the bound port (useful when asked for 0)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.port = 0
        self.health = _Health()
        self._server = grpc.aio.server(options=_options(runtime))
        self._services = _Deferred(runtime, _tickets(runtime))
        self._server.add_generic_rpc_handlers((self.health, self._services))  # health claims its service only
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve; a port that cannot be bound raises ``OSError`` (start-up fails, as daprd's)."""
        port = self.runtime.settings.grpc_port
        addresses = _addresses(self.runtime.settings.listen_address, port)
        uds = self.runtime.settings.unix_socket("grpc")
        if uds is not None:  # --unix-domain-socket: the socket instead of TCP, as daprd
            uds.unlink(missing_ok=True)  # left by a sidecar that died; the HTTP socket beside it proved it dead
            addresses = [f"unix:{uds}"]
        for address in addresses:
            try:
                bound = self._server.add_insecure_port(address)
            except RuntimeError as exc:
                raise OSError(f"cannot listen for gRPC on {address}: {exc}") from None
            self.port = self.port or bound
            port = self.port  # every address on the same port when 0 asked for a free one
        await self.health.report(serving=False)
        await self._server.start()
        self._watch = asyncio.get_running_loop().create_task(self._report_health(), name="grpc-health")
        if uds is not None:
            self.port = 0  # no TCP port
        log.info("gRPC API listening on %s", uds or f"port {self.port}")

    async def _report_health(self) -> None:
        await self.runtime.wait_ready()
        await self.health.report(serving=True)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.health.enter_graceful_shutdown()
        await self._server.stop(STOP_GRACE)
        if self._services.proxy is not None:
            await self._services.proxy.close()
