"""Service invocation and the fallback route: any unknown path or method is an invocation attempt.

The target comes from the ``dapr-app-id`` header, basic auth, or ``/v1.0/invoke/<app-id>/method/<method>``
(``app.invocation.route``); the invoker does the rest.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.errors import ApiError
from app.http import runtime_of
from app.invocation.route import find_target
from app.routing import Router

__all__ = ("fallback", "router")

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT"]
router = Router()


async def _invoke(request: Request) -> Response:
    app_id, method = find_target(request.scope["path"], request.scope["headers"])
    if not app_id:
        raise ApiError(
            404, "ERR_DIRECT_INVOKE", "failed getting app id either from the URL path or the header dapr-app-id"
        )
    invoker = runtime_of(request).invocation
    if invoker is None:
        raise ApiError(500, "ERR_DIRECT_INVOKE", "invoke API is not ready")
    return await invoker.invoke(request, app_id, method)


@router.api_route("/v1.0/invoke/{app_id}/method/{method:path}", methods=METHODS)
async def invoke(request: Request, app_id: str, method: str) -> Response:
    """The path form; a ``dapr-app-id`` header still wins over it, as in daprd (``find_target``)."""
    return await _invoke(request)


async def fallback(request: Request) -> Response:
    """Every path and method no route declares: daprd's router sends them to service invocation too."""
    return await _invoke(request)
