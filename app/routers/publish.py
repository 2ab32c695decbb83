"""Pub/sub API: ``/v1.0/publish/{pubsub}/{topic}`` and bulk publish."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.http import query_metadata, runtime_of
from app.routing import Router
from app.wire import pubsub as wire

__all__ = ("router",)

router = Router()


def _trace(request: Request) -> dict[str, str]:
    headers = request.headers
    return {name: headers[name] for name in ("traceparent", "tracestate") if name in headers}


@router.api_route("/v1.0-alpha1/publish/bulk/{pubsub_name}/{topic:path}", methods=["POST", "PUT"])
@router.api_route("/v1.0/publish/bulk/{pubsub_name}/{topic:path}", methods=["POST", "PUT"])
async def bulk_publish(request: Request, pubsub_name: str, topic: str) -> Response:
    pubsub = runtime_of(request).pubsub
    pubsub.check_publishable(pubsub_name, topic)
    entries = await wire.bulk_entries(pubsub_name, topic, await request.body())
    await pubsub.bulk_publish(pubsub_name, topic, entries, query_metadata(request), _trace(request))
    return Response(status_code=204)


@router.api_route("/v1.0/publish/{pubsub_name}/{topic:path}", methods=["POST", "PUT"])
async def publish(request: Request, pubsub_name: str, topic: str) -> Response:
    await runtime_of(request).pubsub.publish(
        pubsub_name,
        topic,
        await request.body(),
        request.headers.get("content-type", ""),
        query_metadata(request),
        _trace(request),
    )
    return Response(status_code=204)
