"""What Dapr does before any gRPC method runs, for every method of every service but health: the API token,
the start-up gate, and the translation of errors into Dapr's statuses.

* ``dapr-api-token`` metadata is required when ``DAPR_API_TOKEN`` is set, exactly like the HTTP header:
  Unauthenticated ``Unauthorized`` with daprd's ErrorInfo otherwise; the health service is exempt, as
  ``/v1.0/healthz`` is.
* Calls wait until the components are initialised (or failed), as HTTP API calls do.
* An exception from a method becomes the status of the one error table (``app.grpc.status``): a client
  mistake is never UNKNOWN.

Each servicer method is wrapped once, before the servicer is registered (``guard``), rather than through a
grpcio server interceptor, which costs a coroutine and a handler lookup on every call.
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

if TYPE_CHECKING:
    from app.runtime import Runtime

    Context = grpc.aio.ServicerContext[Any, Any]

__all__ = ("guard",)


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


def guard(servicer: Any, names: list[str], runtime: Runtime) -> None:
    """Wrap the methods ``names`` of ``servicer`` (on the instance) with the token check, the start-up gate
    and Dapr's error statuses."""
    for name in names:
        setattr(servicer, name, _guarded(getattr(servicer, name), runtime))


async def _admit(runtime: Runtime, token: str, context: Context) -> None:
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
            await _admit(runtime, token, context)
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
        await _admit(runtime, token, context)
        try:
            return await method(request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await abort(context, exc, app_id)

    return unary
