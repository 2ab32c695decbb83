"""Dapr APIs this sidecar does not serve: ``501 ERR_NOT_IMPLEMENTED`` naming the API.

Without these routes a call to, say, ``/v1.0/actors/...`` would fall to service invocation and answer
``404 ERR_DIRECT_INVOKE "failed getting app id"``, which sends a Dapr user looking for a missing app id. The
routes take the methods daprd declares for each API, so any other method or path still falls to invocation,
as in Dapr. The gRPC front answers the same APIs with UNIMPLEMENTED. An API that gets served loses its line
here (its router is listed before this one in ``app.main.ROUTERS`` meanwhile).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.errors import ApiError
from app.routing import Endpoint, Router

__all__ = ("ERROR_CODE", "UNSERVED", "router")

ERROR_CODE = "ERR_NOT_IMPLEMENTED"
_ANY = ("GET", "POST", "PUT", "DELETE", "PATCH")

#: (template, methods, API name) of every Dapr API without a block here.
UNSERVED: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("/v1.0/bindings/{name}", ("POST", "PUT"), "bindings"),
    ("/v1.0/actors/{rest:path}", _ANY, "actors"),
    ("/v1.0/workflows/{rest:path}", ("GET", "POST"), "workflows"),
    ("/v1.0-beta1/workflows/{rest:path}", ("GET", "POST"), "workflows"),
    ("/v1.0-alpha1/workflows/{rest:path}", ("GET", "POST"), "workflows"),
    ("/v1.0-alpha1/jobs/{name}", ("GET", "POST", "DELETE"), "jobs"),
    ("/v1.0-alpha1/conversation/{name}/converse", ("POST",), "conversation"),
    ("/v1.0-alpha2/conversation/{name}/converse", ("POST",), "conversation"),
    ("/v1.0-alpha1/crypto/{name}/encrypt", ("PUT", "POST"), "cryptography"),
    ("/v1.0-alpha1/crypto/{name}/decrypt", ("PUT", "POST"), "cryptography"),
)

router = Router()


def _refusal(api: str) -> Endpoint:
    message = f"the {api} API is not implemented by this sidecar (Layotto for Python)"

    async def refuse(request: Request, **params: str) -> Response:
        raise ApiError(501, ERROR_CODE, message)

    refuse.__name__ = f"unserved_{api}"
    return refuse


for _template, _methods, _api in UNSERVED:
    router.api_route(_template, _methods)(_refusal(_api))
