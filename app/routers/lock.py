"""Distributed lock API (Dapr alpha): ``/v1.0-alpha1/lock/{store}`` and ``/v1.0-alpha1/unlock/{store}``.

Extension (not in Dapr, and declared but never implemented in Layotto as ``LockKeepAlive``):
``POST /v1.0-alpha1/lock/{store}/renew`` with the lock body ``{"resourceId", "lockOwner",
"expiryInSeconds"}`` makes a held lock expire ``expiryInSeconds`` from now, for its owner only, and answers
``200 {"status": n}`` with unlock's statuses (0 renewed, 1 no such lock, 2 held by another owner).

Each route decodes (``app.wire.lock``), calls the block, encodes. The body is read before any check, as
Dapr does: a malformed body wins over every other error. POST only, as Dapr: other methods reach the
service-invocation fallback.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.http import json_response, runtime_of
from app.routing import Router
from app.wire import lock as wire

__all__ = ("router",)

router = Router()


@router.post("/v1.0-alpha1/lock/{store_name}")
async def try_lock(request: Request, store_name: str) -> Response:
    taken = await runtime_of(request).lock.try_lock(store_name, wire.try_lock(await request.body()))
    return json_response({"success": taken})


@router.post("/v1.0-alpha1/unlock/{store_name}")
async def unlock(request: Request, store_name: str) -> Response:
    status = await runtime_of(request).lock.unlock(store_name, wire.unlock(await request.body()))
    return json_response({"status": int(status)})


@router.post("/v1.0-alpha1/lock/{store_name}/renew")
async def renew(request: Request, store_name: str) -> Response:
    status = await runtime_of(request).lock.renew(store_name, wire.renew(await request.body()))
    return json_response({"status": int(status)})
