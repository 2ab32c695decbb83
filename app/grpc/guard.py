"""What Dapr does before any gRPC method runs, for every method of every service but health: the API token,
the start-up gate, and the translation of errors into Dapr's statuses.

* ``dapr-api-token`` metadata is required when ``DAPR_API_TOKEN`` is set, exactly like the HTTP header:
  Unauthenticated ``Unauthorized`` with daprd's ErrorInfo otherwise; the health service is exempt, as
  ``/v1.0/healthz`` is.
* Calls wait until the components are initialised (or failed), as HTTP API calls do.
* An exception from a method becomes the status of the one error table (``app.grpc.status``): a client
  mistake is never UNKNOWN.

Each servicer method is wrapped once when it is registered (``guard``, from ``app.grpc.registration``), rather
than through a grpcio server interceptor, which costs a coroutine and a handler lookup on every call.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc

from app.errors import GrpcCode, WireError
from app.grpc.status import abort, abort_with
from building_blocks.errors import InvalidRequest

if TYPE_CHECKING:
    from app.runtime import Runtime

    Context = grpc.aio.ServicerContext[Any, Any]

__all__ = ("Malformed", "admit", "guard")


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


class Malformed:
    """What a request that is not its protobuf message decodes to (see ``app.grpc.registration``): the
    method answers INVALID_ARGUMENT, where grpcio's own failing deserializer would answer INTERNAL."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def error(self) -> InvalidRequest:
        return InvalidRequest(f"malformed request: {self.reason}")


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Malformed):
            raise request.error()
        yield request


def guard(method: Callable[..., Any], runtime: Runtime, streamed_requests: bool = False) -> Callable[..., Any]:
    """``method`` with the token check, the start-up gate, malformed requests refused and Dapr's error
    statuses."""
    if streamed_requests:
        inner = method

        def method(requests: AsyncIterator[Any], context: Context) -> Any:
            return inner(_checked(requests), context)

        method.__wrapped__ = inner  # type: ignore[attr-defined]
        if inspect.isasyncgenfunction(inner):
            return _guarded(_as_asyncgen(method), runtime)
    return _guarded(method, runtime)


def _as_asyncgen(method: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def responses(request: Any, context: Context) -> AsyncIterator[Any]:
        async for response in method(request, context):
            yield response

    return responses


async def admit(runtime: Runtime, token: str, context: Context) -> None:
    if token:
        given = [value for key, value in context.invocation_metadata() or () if key == "dapr-api-token"]
        if given != [token]:
            await abort_with(context, _MISMATCH if given else _MISSING)
    if not runtime.ready:
        await runtime.wait_settled()


def _guarded(method: Callable[..., Any], runtime: Runtime) -> Callable[..., Any]:
    token, app_id = runtime.settings.api_token, runtime.settings.app_id

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
            await admit(runtime, token, context)
            if isinstance(request, Malformed):
                await abort(context, request.error(), app_id)
            try:
                async for response in method(request, context):
                    yield response
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                await abort(context, exc, app_id)

        return streaming

    @functools.wraps(method)
    async def unary(request: Any, context: Context) -> Any:
        await admit(runtime, token, context)
        if isinstance(request, Malformed):
            await abort(context, request.error(), app_id)
        try:
            return await method(request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await abort(context, exc, app_id)

    return unary
