"""Secrets API: ``/v1.0/secrets/{store}/{name}`` and ``/v1.0/secrets/{store}/bulk``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.http import json_response, query_metadata, runtime_of
from app.routing import Router

__all__ = ("router",)

router = Router()


@router.get("/v1.0/secrets/{store_name}/bulk")
async def bulk_get_secrets(request: Request, store_name: str) -> Response:
    secrets = await runtime_of(request).secrets.bulk_get(store_name, query_metadata(request))
    return json_response(secrets) if secrets else Response(status_code=204)


@router.get("/v1.0/secrets/{store_name}/{name:path}")
async def get_secret(request: Request, store_name: str, name: str) -> Response:
    secret = await runtime_of(request).secrets.get(store_name, name, query_metadata(request))
    return json_response(secret) if secret else Response(status_code=204)
