"""What Dapr does before any gRPC method runs, once for every service: the API token, the start-up gate,
and the translation of errors into Dapr's statuses.

* ``dapr-api-token`` metadata is required when ``DAPR_API_TOKEN`` is set, exactly like the HTTP header:
  Unauthenticated ``Unauthorized`` with daprd's ErrorInfo otherwise; the health service is exempt, as
  ``/v1.0/healthz`` is.
* Calls wait until the components are initialised (or failed), as HTTP API calls do.
* An exception from a method becomes the status of the one error table (``app.grpc.status``): a client
  mistake is never UNKNOWN.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from app.errors import GrpcCode, WireError
from app.governance.api_access import GRPC_NOT_AVAILABLE, GrpcApiAccess
from app.grpc.status import abort, abort_with

if TYPE_CHECKING:
    from app.runtime import Runtime

    Handler = grpc.RpcMethodHandler[Any, Any]
    Context = grpc.aio.ServicerContext[Any, Any]

__all__ = ("FrontInterceptor",)

_EXEMPT = "/grpc.health.v1.Health/"


def _unauthorized(message: str) -> WireError:
    """daprd's answer (pkg/api/grpc/auth.go): the HTTP meaning in the ErrorInfo's metadata."""
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "Unauthorized",
        "domain": "dapr.io",
        "metadata": {"http.code": "401", "http.error_message": message},
    }
    return WireError(401, "Unauthorized", "Unauthorized", [info], GrpcCode.UNAUTHENTICATED)


_MISSING = _unauthorized("missing api token in request metadata")
_MISMATCH = _unauthorized("authentication error: api token mismatch")


class FrontInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.token = runtime.settings.api_token
        self._guarded: dict[str, Handler] = {}
        self._refusals: dict[tuple[str, int], Handler] = {}
        #: ``spec.api``'s gRPC rules (``app.governance``): a blocked method answers UNIMPLEMENTED.
        self.api = GrpcApiAccess(runtime.core.configuration_spec.api)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_EXEMPT):
            return handler
        if self.token:
            given = [value for key, value in handler_call_details.invocation_metadata if key == "dapr-api-token"]
            if given != [self.token]:
                return self._refusal(method, handler, _MISMATCH if given else _MISSING)
        if self.api.active and self.api.blocked(method):
            return self._refusal(method, handler, GRPC_NOT_AVAILABLE)
        if not self.runtime.ready:
            await self.runtime.wait_settled()
        guarded = self._guarded.get(method)
        if guarded is None:
            guarded = self._guarded[method] = _guard(handler, self.runtime.settings.app_id)
        return guarded

    def _refusal(self, method: str, handler: Handler, error: WireError) -> Handler:
        key = (method, id(error))
        refusal = self._refusals.get(key)
        if refusal is None:

            async def refuse(request: Any, context: Context) -> Any:
                await abort_with(context, error)

            refusal = self._refusals[key] = _replace(handler, refuse, refuse)
        return refusal


def _replace(handler: Handler, unary: Callable[..., Any], streaming: Callable[..., Any]) -> Handler:
    """``handler`` with its behaviour replaced: ``unary`` for unary responses, ``streaming`` for streams."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary, **kwargs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming, **kwargs)
    return grpc.stream_stream_rpc_method_handler(streaming, **kwargs)


def _guard(handler: Handler, app_id: str) -> Handler:
    """``handler`` whose errors end the call with Dapr's status."""
    behaviour: Callable[..., Any] = (
        handler.unary_unary or handler.stream_unary or handler.unary_stream or handler.stream_stream  # type: ignore[assignment]
    )

    async def unary(request: Any, context: Context) -> Any:
        try:
            return await behaviour(request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await abort(context, exc, app_id)

    async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
        try:
            responses = behaviour(request, context)
            if inspect.isasyncgen(responses):
                async for response in responses:
                    yield response
            else:  # a coroutine that writes to the context itself
                await responses
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await abort(context, exc, app_id)

    return _replace(handler, unary, streaming)
