"""Metadata API (``/v1.0/metadata``) and shutdown (``/v1.0/shutdown``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app import __version__
from app.http import json_response, runtime_of
from app.routing import Router

__all__ = ("router",)

router = Router()


@router.get("/v1.0/metadata")
async def get_metadata(request: Request) -> Response:
    runtime = runtime_of(request)
    settings = runtime.settings
    components = []
    for loaded in runtime.components:
        entry: dict[str, Any] = {"name": loaded.spec.name, "type": loaded.spec.type, "version": loaded.spec.version}
        if capabilities := loaded.capabilities:
            entry["capabilities"] = capabilities
        components.append(entry)
    for spec, _ in runtime.core.middleware.values():  # HTTP middleware are components too, as daprd lists them
        components.append({"name": spec.name, "type": spec.type, "version": spec.version})
    connection: dict[str, Any] = {"protocol": settings.app_protocol, "channelAddress": settings.app_channel_address}
    if settings.app_port:
        connection["port"] = settings.app_port
    return json_response(
        {
            "id": settings.app_id,
            "runtimeVersion": __version__,
            "enabledFeatures": [],
            "actors": [],
            "components": components,
            "extended": {**runtime.extended, "daprRuntimeVersion": __version__},
            "subscriptions": [
                {
                    "pubsubname": spec.pubsub,
                    "topic": spec.topic,
                    "metadata": dict(spec.metadata),
                    "rules": [{"match": rule.match, "path": rule.path} for rule in spec.rules],
                    "deadLetterTopic": spec.dead_letter_topic,
                    "type": spec.kind,
                }
                for spec in runtime.pubsub.subscriptions
            ],
            "httpEndpoints": [{"name": name} for name in runtime.invocation.endpoints]
            if runtime.invocation is not None
            else [],
            "appConnectionProperties": connection,
        }
    )


@router.put("/v1.0/metadata/{attribute}")
async def put_metadata(request: Request, attribute: str) -> Response:
    runtime_of(request).extended[attribute] = (await request.body()).decode(errors="replace")
    return Response(status_code=204)


@router.post("/v1.0/shutdown")
async def shutdown(request: Request) -> Response:
    force = request.headers.get("dapr-force-shutdown", "").lower() == "true"
    runtime_of(request).request_shutdown(force=force)
    return Response(status_code=204)
