"""The gRPC server: Dapr's API and Layotto's ``Runtime`` service on ``--dapr-grpc-port``, on the HTTP front's
listen addresses, in the sidecar's event loop (grpcio's asyncio server).

Options as daprd's server: messages up to ``--max-body-size`` each way, request metadata up to
``--read-buffer-size``; keepalive pings from clients accepted every 8 s even without calls (grpc core would
otherwise answer the SDKs' pings with GOAWAY ``too_many_pings``), a ping every 10 s towards idle clients,
idle connections closed after 3 minutes. The health service (``grpc.health.v1``) reports SERVING once the
components are initialised, as ``/v1.0/healthz`` answers 204.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, cast

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health, health_pb2

from app.grpc.dapr.service import add_to_server
from app.grpc.layotto import service as layotto
from app.grpc.proxy import ProxyHandler

if TYPE_CHECKING:
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


def _add_health(server: grpc.aio.Server, servicer: health.aio.HealthServicer) -> None:
    """``grpc.health.v1`` as a generic handler only, as the Dapr service is served.

    The generated ``add_HealthServicer_to_server`` also registers its three methods with grpc core, and then
    grpcio's accept loop keeps one pending call per registered method beside the generic one and waits on all
    of them (``asyncio.wait``) on every call of every service: 4 futures instead of 1, about 3 us per call.
    """
    service = cast(ServiceDescriptor, health_pb2.DESCRIPTOR.services_by_name["Health"])
    handlers = {}
    for method in service.methods:
        request, response = GetMessageClass(method.input_type), GetMessageClass(method.output_type)
        make = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


class GrpcFront:
    """Started by the runtime once its core starts; ``port`` is the bound port (useful when asked for 0)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.port = 0
        self.health = health.aio.HealthServicer()
        self._server = grpc.aio.server(options=_options(runtime))
        dapr = add_to_server(self._server, runtime)
        layotto.add_to_server(self._server, runtime, dapr)  # Layotto's Runtime service on the same port, as Layotto
        _add_health(self._server, self.health)
        self._proxy = ProxyHandler(runtime)
        self._server.add_generic_rpc_handlers((self._proxy,))  # last: what no service claimed
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
        await self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()
        self._watch = asyncio.get_running_loop().create_task(self._report_health(), name="grpc-health")
        if uds is not None:
            self.port = 0  # no TCP port
        log.info("gRPC API listening on %s", uds or f"port {self.port}")

    async def _report_health(self) -> None:
        await self.runtime.wait_ready()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.health.enter_graceful_shutdown()
        await self._server.stop(STOP_GRACE)
        await self._proxy.close()
