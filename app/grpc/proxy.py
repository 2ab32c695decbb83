"""gRPC proxying by ``dapr-app-id`` metadata: a call to a service this sidecar does not host goes to the app
named in the metadata, as daprd's ``UnknownServiceHandler`` does.

Unary calls only (a streamed call answers UNIMPLEMENTED): the request's bytes go on untouched, with the
call's metadata (``dapr-app-id`` and ``dapr-api-token`` removed). To this sidecar's own gRPC app the call goes
straight over its channel; to another app it crosses the sidecar-to-sidecar hop as an invocation carrying
the method in ``layotto-grpc-method``, and the callee's sidecar makes the same raw call to its app
(``app.grpc.app_channel``); the app's status comes back in ``grpc-status``/``grpc-message``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import grpc

from app.errors import ApiError, GrpcCode
from app.grpc.guard import admit
from app.grpc.status import abort
from building_blocks.errors import InvalidRequest
from building_blocks.invocation.base import Call
from building_blocks.invocation.body import RequestBody

if TYPE_CHECKING:
    from app.runtime import Runtime

    Context = grpc.aio.ServicerContext[Any, Any]

__all__ = ("METHOD_HEADER", "ProxyHandler")

log = logging.getLogger("layotto.grpc")
#: The header carrying a proxied call's method across the hop.
METHOD_HEADER = "layotto-grpc-method"
_DROPPED = frozenset({"dapr-app-id", "dapr-api-token", "content-type", "user-agent", "te"})


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class ProxyHandler(grpc.GenericRpcHandler):
    """Answers every method no service claimed (registered after the services, so it is asked last)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method

        async def proxy(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
            yield await self._proxy(method, requests, context)

        return grpc.stream_stream_rpc_method_handler(proxy)

    async def _proxy(self, method: str, requests: AsyncIterator[bytes], context: Context) -> bytes:
        runtime = self.runtime
        metadata = [(k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str)]
        target = next((v for k, v in metadata if k == "dapr-app-id"), "")
        if not target:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"unknown service {method.split('/')[1]}")
        await admit(runtime, runtime.settings.api_token, context)
        messages = [message async for message in requests]
        if len(messages) != 1:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "only unary calls are proxied by this sidecar")
        forwarded = [(k, v) for k, v in metadata if k not in _DROPPED and not k.startswith(("grpc-", ":"))]
        try:
            return await self._call(target, method, messages[0], forwarded, context)
        except (grpc.aio.AbortError, grpc.aio.AioRpcError):
            raise
        except Exception as exc:
            await abort(context, exc, runtime.settings.app_id)
            raise AssertionError("abort returned") from None  # pragma: no cover

    async def _call(
        self, target: str, method: str, request: bytes, metadata: list[tuple[str, str]], context: Context
    ) -> bytes:
        invoker = self.runtime.invocation
        if invoker is None:
            raise ApiError(500, "ERR_DIRECT_INVOKE", "invoke API is not ready", GrpcCode.INTERNAL)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in metadata]
        headers += [(METHOD_HEADER.encode(), method.encode("latin-1")), (b"content-type", b"application/grpc")]
        call = Call("POST", "", b"", headers, RequestBody(_once(request), len(request), False))
        reply = await invoker.block.invoke(target, _method_path(method), call)
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
        return content


def _method_path(method: str) -> str:
    """The invocation method for a gRPC method path: its name without the leading slash."""
    return method.lstrip("/")
