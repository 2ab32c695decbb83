"""Health: Dapr's ``/v1.0/healthz`` and Layotto's actuator (``/actuator/health/...``, ``/actuator/info``)."""

from __future__ import annotations

import asyncio
import platform
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app import __version__
from app.errors import ApiError
from app.http import json_response, runtime_of
from app.routing import Router

__all__ = ("router",)

router = Router()
PING_TIMEOUT = 1.0


@router.get("/v1.0/healthz")
async def healthz(request: Request) -> Response:
    runtime = runtime_of(request)
    app_id = request.query_params.get("appid")
    if app_id is not None and app_id != runtime.settings.app_id:
        raise ApiError(500, "ERR_HEALTH_APPID_NOT_MATCH", "dapr app-id does not match")
    waiting = runtime.not_ready_targets()
    if waiting:
        raise ApiError(500, "ERR_HEALTH_NOT_READY", f"dapr is not ready: [{' '.join(waiting)}]")
    return Response(status_code=204)


@router.get("/v1.0/healthz/outbound")
async def healthz_outbound(request: Request) -> Response:
    if not runtime_of(request).ready:
        raise ApiError(500, "ERR_OUTBOUND_HEALTH_NOT_READY", "dapr outbound is not ready")
    return Response(status_code=204)


async def _component_status(component: Any) -> dict[str, Any]:
    try:
        await asyncio.wait_for(component.ping(), PING_TIMEOUT)
    except Exception as exc:
        return {"status": "DOWN", "details": {"reason": str(exc) or type(exc).__name__}}
    return {"status": "UP"}


def _overall(indicators: dict[str, dict[str, Any]]) -> str:
    statuses = {indicator["status"] for indicator in indicators.values()}
    return "DOWN" if "DOWN" in statuses else "INIT" if "INIT" in statuses else "UP"


@router.get("/actuator/health/{kind}")
async def actuator_health(request: Request, kind: str) -> Response:
    if kind not in ("liveness", "readiness"):  # Layotto answers 500; an unknown name is the client's mistake
        return json_response({"error": "health type invalid"}, 404)
    runtime = runtime_of(request)
    if runtime.failure:
        startup = {"status": "DOWN", "details": {"reason": runtime.failure}}
    elif runtime.ready:
        startup = {"status": "UP", "details": {"reason": ""}}
    else:
        startup = {"status": "INIT", "details": {"reason": "starting"}}
    indicators: dict[str, dict[str, Any]] = {"runtime_startup": startup}
    if kind == "readiness":
        loaded = [c for c in runtime.components if c.ready]
        statuses = await asyncio.gather(*(_component_status(c.component) for c in loaded))
        indicators.update((c.spec.name, status) for c, status in zip(loaded, statuses, strict=True))
    status = _overall(indicators) if kind == "readiness" else ("DOWN" if runtime.failure else "UP")
    return json_response({"status": status, "components": indicators}, 200 if status == "UP" else 503)


@router.get("/actuator/info")
async def actuator_info(request: Request) -> Response:
    runtime = runtime_of(request)
    return json_response(
        {
            "app": {
                "name": "Layotto",
                "version": __version__,
                "runtime": f"{platform.python_implementation()} {platform.python_version()}",
                "appId": runtime.settings.app_id,
            }
        }
    )
