"""Service invocation and the fallback route: any unknown path or method is an invocation attempt.

The invocation itself (app channel, name resolution) is not built yet; with an app id the request is
answered ``501 ERR_API_UNIMPLEMENTED`` so a caller gets a clear error instead of a hang.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from app.errors import ApiError

__all__ = ("fallback_router", "router")

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT"]
router = APIRouter(tags=["invoke"])
fallback_router = APIRouter(include_in_schema=False)


def _unavailable(app_id: str) -> ApiError:
    return ApiError(
        501, "ERR_API_UNIMPLEMENTED", f"failed to invoke, id: {app_id}, err: service invocation is not available yet"
    )


@router.api_route("/v1.0/invoke/{app_id}/method/{method:path}", methods=METHODS)
async def invoke(request: Request, app_id: str, method: str) -> Response:
    raise _unavailable(app_id)


@fallback_router.api_route("/{path:path}", methods=METHODS)
async def fallback(request: Request, path: str) -> Response:
    app_id = request.headers.get("dapr-app-id")
    if not app_id:
        raise ApiError(
            404, "ERR_DIRECT_INVOKE", "failed getting app id either from the URL path or the header dapr-app-id"
        )
    raise _unavailable(app_id)
