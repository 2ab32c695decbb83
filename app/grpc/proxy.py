"""gRPC proxying by ``dapr-app-id`` metadata: a call to a service this sidecar does not host goes to the app
named in the metadata, as daprd's ``UnknownServiceHandler`` does, whatever its kind (unary, server-, client-
or bidirectional streaming: every call is relayed as a stream, message by message).

* To this sidecar's own gRPC app: straight over its channel (``app.grpc.app_channel``).
* To another app: the invocation block first crosses the hop to that app's sidecar (name resolution,
  resiliency, the hop's credentials, the caller's identity, access control) asking for a ticket
  (``app.grpc.hop_tickets``); the stream then goes to that sidecar's gRPC port with the ticket, and that
  sidecar relays it to its app. When the hop uses mutual TLS, the stream would leave it for a plaintext port:
  then a call crosses the hop whole, as an invocation carrying the method in ``layotto-grpc-method``, and only
  unary calls can be proxied.

Relayed both ways with backpressure (one message in flight each way), cancelled both ways, with the
deadline, metadata, the target's headers, status, message and trailers (details included) passed through;
``dapr-app-id`` and ``dapr-api-token`` are stripped, and the identity the app sees is set by a sidecar.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import grpc
from grpc._cython import cygrpc  # type: ignore[attr-defined]  # grpcio's own module, for _write

from app.errors import ApiError, GrpcCode
from app.grpc.app_channel import GrpcAppChannel
from app.grpc.guard import admit
from app.grpc.hop_tickets import ADDRESS_HEADER, STREAM_HEADER, TICKET_HEADER, TicketDesk
from app.grpc.status import abort
from building_blocks.errors import InvalidRequest, InvocationFailed
from building_blocks.invocation.base import Call
from building_blocks.invocation.body import RequestBody
from building_blocks.invocation.headers import identity
from building_blocks.invocation.targets import TargetKind, parse_target

if TYPE_CHECKING:
    from app.runtime import Runtime

    Context = grpc.aio.ServicerContext[Any, Any]

__all__ = ("METHOD_HEADER", "ProxyHandler")

log = logging.getLogger("layotto.grpc")
#: The header carrying a proxied call's method across the hop.
METHOD_HEADER = "layotto-grpc-method"
Pairs = list[tuple[str, str | bytes]]
#: Never passed on: the target, this sidecar's token, HTTP/2's own, the identity (set by a sidecar), and the
#: sidecars' own markers (a client's would be taken for theirs).
_DROPPED = frozenset(
    {
        "dapr-app-id",
        "dapr-api-token",
        "content-type",
        "user-agent",
        "te",
        "dapr-caller-app-id",
        "dapr-caller-namespace",
        "dapr-callee-app-id",
        TICKET_HEADER,
        STREAM_HEADER,
        METHOD_HEADER,
        "layotto-internal-token",
    }
)


def _forwarded(metadata: Iterable[tuple[str, str | bytes]]) -> Pairs:
    return [(k, v) for k, v in metadata if k not in _DROPPED and not k.startswith(("grpc-", ":"))]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover


class ProxyHandler(grpc.GenericRpcHandler):
    """Answers every method no service claimed (asked after the services)."""

    def __init__(self, runtime: Runtime, tickets: TicketDesk) -> None:
        self.runtime = runtime
        settings = runtime.settings
        #: Tickets for streams other sidecars proxy to this sidecar's app (issued over the hop; ``tickets``).
        self.tickets = tickets
        size = settings.max_body_size
        self._options = [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]
        #: Channels to other sidecars' gRPC ports, kept (a connection per stream would cost a handshake each).
        self._peers: dict[str, grpc.aio.Channel] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method

        async def proxy(requests: AsyncIterator[bytes], context: Context) -> None:
            await self._proxy(method, requests, context)

        return grpc.stream_stream_rpc_method_handler(proxy)

    async def _proxy(self, method: str, requests: AsyncIterator[bytes], context: Context) -> None:
        runtime = self.runtime
        metadata = list(context.invocation_metadata() or ())
        ticket = next((v for k, v in metadata if k == TICKET_HEADER and isinstance(v, str)), "")
        target = next((v for k, v in metadata if k == "dapr-app-id" and isinstance(v, str)), "")
        if not ticket and not target:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"unknown service {method.split('/')[1]}")
        try:
            if ticket:  # a stream another sidecar proxies to this sidecar's app
                hop = self.tickets.redeem(ticket, method)
                if hop is None:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid or expired proxy ticket")
                caller = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in hop]
                told = {name for name, _ in caller}  # the hop's trace context wins over the stream's
                forwarded = [(k, v) for k, v in _forwarded(metadata) if k not in told]
                await self._to_app(method, requests, context, [*forwarded, *caller])
                return
            await admit(runtime, runtime.settings.api_token, context)
            await self._route(target, method, requests, context, _forwarded(metadata))
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await abort(context, exc, runtime.settings.app_id)

    async def _route(
        self, target: str, method: str, requests: AsyncIterator[bytes], context: Context, metadata: Pairs
    ) -> None:
        invoker = self.runtime.invocation
        if invoker is None:
            raise ApiError(500, "ERR_DIRECT_INVOKE", "invoke API is not ready", GrpcCode.INTERNAL)
        block = invoker.block
        instance = block.instance
        try:
            where = parse_target(target, instance.app_id, instance.namespace, {})
        except InvocationFailed as exc:  # daprd's proxy answers its director's failures as they come: UNKNOWN
            raise ApiError(500, "ERR_DIRECT_INVOKE", str(exc), GrpcCode.UNKNOWN) from None
        if where.kind is TargetKind.EXTERNAL:
            raise InvalidRequest(f"gRPC calls are proxied to apps, not to {target}")
        if where.kind is TargetKind.LOCAL:
            me = instance.app_id.encode()
            own = [(k.decode(), v.decode("latin-1")) for k, v in identity(instance.namespace.encode(), me, me)]
            await self._to_app(method, requests, context, [*metadata, *own])
        elif invoker.security.client_tls is not None:
            await self._whole(target, method, requests, context, metadata)
        else:
            await self._to_sidecar(target, method, requests, context, metadata)

    async def _to_app(self, method: str, requests: AsyncIterator[bytes], context: Context, metadata: Pairs) -> None:
        channel = self.runtime.app_channel
        if not isinstance(channel, GrpcAppChannel):
            raise InvalidRequest(f"gRPC proxying to app {self.runtime.settings.app_id} needs --app-protocol grpc")
        relayed: Pairs = [*metadata, *channel.token_metadata()]
        await _relay(channel.channel, method, requests, context, relayed)

    async def _to_sidecar(
        self, target: str, method: str, requests: AsyncIterator[bytes], context: Context, metadata: Pairs
    ) -> None:
        """Ask the target's sidecar for a ticket over the hop, then relay the stream to its gRPC port."""
        try:
            trace = [(k, v) for k, v in metadata if k == "traceparent" and isinstance(v, str)][:1]
            reply = await self._hop(target, method, [(STREAM_HEADER, "1"), *trace])
        except InvocationFailed as exc:  # daprd's proxy answers its director's failures as they come: UNKNOWN
            raise ApiError(500, "ERR_DIRECT_INVOKE", str(exc), GrpcCode.UNKNOWN) from None
        try:
            await reply.aread()
        finally:
            await reply.aclose()
        ticket, address = reply.header(TICKET_HEADER), reply.header(ADDRESS_HEADER)
        if not ticket or not address:
            raise InvalidRequest(f"gRPC proxying to {target} failed: HTTP {reply.status_code}")
        kept = self._peers.get(address)
        if kept is None and len(self._peers) < _PEERS_KEPT:
            kept = self._peers[address] = grpc.aio.insecure_channel(address, options=self._options)
        if kept is not None:
            await _relay(kept, method, requests, context, [*metadata, (TICKET_HEADER, ticket)])
            return
        async with grpc.aio.insecure_channel(address, options=self._options) as channel:  # beyond the bound
            await _relay(channel, method, requests, context, [*metadata, (TICKET_HEADER, ticket)])

    async def close(self) -> None:
        """Close the channels to other sidecars (the gRPC front stops)."""
        peers, self._peers = list(self._peers.values()), {}
        for channel in peers:
            await channel.close()

    async def _hop(self, target: str, method: str, headers: list[tuple[str, str]], data: bytes | None = None) -> Any:
        invoker = self.runtime.invocation
        assert invoker is not None, "checked by _route"
        sent = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        sent += [(METHOD_HEADER.encode(), method.encode("latin-1")), (b"content-type", b"application/grpc")]
        body = RequestBody(_once(data), len(data), False) if data is not None else RequestBody(_nothing(), 0, False)
        return await invoker.block.invoke(target, method.lstrip("/"), Call("POST", "", b"", sent, body))

    async def _whole(
        self, target: str, method: str, requests: AsyncIterator[bytes], context: Context, metadata: Pairs
    ) -> None:
        """A unary call across a hop with mutual TLS: the request whole over the hop, the answer back whole."""
        messages = [message async for message in requests]
        if len(messages) != 1:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "only unary calls are proxied to other apps over a mutual-TLS hop"
            )
        text = [(k, v) for k, v in metadata if isinstance(v, str)]
        reply = await self._hop(target, method, text, messages[0])
        try:
            content = await reply.aread()
        finally:
            await reply.aclose()
        code = reply.header("grpc-status")
        if code is None:  # the target's sidecar answered, not its app: an invocation error of its own
            raise InvalidRequest(f"gRPC proxying to {target} failed: HTTP {reply.status_code}")
        if code != "0":
            status = next((s for s in grpc.StatusCode if str(s.value[0]) == code), grpc.StatusCode.UNKNOWN)
            await context.abort(status, unquote(reply.header("grpc-message") or ""))
        await context.write(content)


#: Other sidecars' addresses whose channels are kept open; streams to more get a channel of their own.
_PEERS_KEPT = 256
#: Seconds a call whose write failed gets to deliver its status (``_write``).
_STATUS_GRACE = 5.0
#: HTTP/2's own headers, which a trailers-only answer shows among its trailers.
_TRANSPORT = frozenset({"content-type", "te", "user-agent", "date"})


def _shown(metadata: Iterable[tuple[str, str | bytes]] | None) -> tuple[tuple[str, str | bytes], ...]:
    """The target's headers or trailers that go back to the caller (gRPC's own are the server's to set)."""
    return tuple(
        (k, v)
        for k, v in metadata or ()
        if k not in _TRANSPORT and (not k.startswith(("grpc-", ":")) or k == "grpc-status-details-bin")
    )


async def _write(call: grpc.aio.StreamStreamCall[bytes, bytes], message: bytes) -> None:
    """``call.write``, except when the target ends the call while the message is on its way: grpcio's asyncio
    client then replaces the target's status with INTERNAL "Internal error from Core" (grpc/grpc#36066), as
    every call to a method the app lacks would show. Here the target's status stays; only when none comes
    does the call end with grpcio's INTERNAL."""
    raw, headers_sent = getattr(call, "_cython_call", None), getattr(call, "_metadata_sent", None)
    if raw is None or not isinstance(headers_sent, asyncio.Event):  # another grpcio: its own write
        await call.write(message)
        return
    if call.done():
        raise asyncio.InvalidStateError("the call is over")
    await headers_sent.wait()
    try:
        await raw.send_serialized_message(message)
    except cygrpc.InternalError as exc:
        try:
            await asyncio.wait_for(asyncio.shield(call.code()), _STATUS_GRACE)
        except TimeoutError:
            raw.set_internal_error(str(exc))
        raise asyncio.InvalidStateError("the call is over") from None


def _settled(writer: asyncio.Task[None]) -> None:
    """The upstream writer's end, retrieved: a caller's stream that broke leaves the status to the target."""
    if not writer.cancelled() and writer.exception() is not None:
        log.debug("proxied request stream ended: %r", writer.exception())


async def _relay(
    channel: grpc.aio.Channel, method: str, requests: AsyncIterator[bytes], context: Context, metadata: Pairs
) -> None:
    """The call relayed to ``method`` on ``channel`` until the target ends it; its end becomes the call's."""
    remaining = context.time_remaining()
    stream: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(method)
    call = stream(metadata=metadata, timeout=remaining)

    async def upstream() -> None:
        try:
            async for message in requests:
                await _write(call, message)
            await call.done_writing()
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            pass  # the target ended the call: its status is what the caller gets

    writer = asyncio.get_running_loop().create_task(upstream(), name="grpc-proxy-upstream")

    def over(_: Context) -> None:  # the call is over; the caller may never have half-closed its stream
        writer.cancel()

    context.add_done_callback(over)  # type: ignore[arg-type]  # the stubs name a class, grpc takes any callable
    writer.add_done_callback(_settled)
    try:
        headers = _shown(await call.initial_metadata())
        if headers:
            await context.send_initial_metadata(headers)
        while (message := await call.read()) is not grpc.aio.EOF:
            try:
                await context.write(message)
            except cygrpc.InternalError:  # the caller is gone: so is the target's call
                call.cancel()
                return
        code = await call.code()
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
    except asyncio.CancelledError:  # the caller went away (or the sidecar stops): so does the target's call
        call.cancel()
        raise
    trailers = _shown(await call.trailing_metadata())
    if code is grpc.StatusCode.OK:
        context.set_trailing_metadata(trailers)
        return
    await context.abort(code, await call.details() or "", trailers)
