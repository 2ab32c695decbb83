"""State API: ``/v1.0/state/...`` and ``/v1.0-alpha1/state/{store}/query``."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from app.http import json_response, metadata_from_query, query_metadata, raw_json, raw_response, runtime_of
from app.routing import Router
from app.wire import state as wire
from building_blocks._common.cooperative import map_items
from building_blocks.state.base import BulkGetItem, DeleteItem, GetResponse, QueryResult

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("router",)

router = Router()
NO_CONTENT = 204
_JSON_TYPE = (b"content-type", b"application/json")


def _expire_time(expires_at: float) -> str:
    return datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _item_metadata(item: GetResponse) -> dict[str, str]:
    return {"ttlExpireTime": _expire_time(item.expires_at)} if item.expires_at is not None else {}


@router.get("/v1.0/state/{store_name}/{key:path}")
def get_state(request: Request, store_name: str, key: str) -> Awaitable[Response]:
    """``read_state``'s coroutine itself: the hottest route spares a frame."""
    return read_state(runtime_of(request), store_name, key, request.scope["query_string"])


async def read_state(runtime: Runtime, store_name: str, key: str, query: bytes) -> Response:
    """``get_state`` on its parts: the front door's fast lane calls it without making a ``Request``."""
    consistency = QueryParams(query).get("consistency", "") if query else ""
    item = await runtime.state.get(store_name, key, consistency, metadata_from_query(query))
    status, body, headers = item_answer(item)
    if status != NO_CONTENT:
        headers.append((b"content-length", b"%d" % len(body)))
    return raw_response(status, body, headers)


def item_answer(item: GetResponse | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The status, body and headers (as they go on the wire) of a state get's answer, but for the
    ``Content-Length`` of a 200, which comes last (``LaneCycle.relay`` writes it so)."""
    if item is None:
        return NO_CONTENT, b"", []
    headers = [(b"etag", item.etag.encode())] if item.etag is not None else []
    if item.expires_at is not None:
        headers.append((b"metadata.ttlexpiretime", _expire_time(item.expires_at).encode()))
    headers.append(_JSON_TYPE)
    return 200, item.value, headers


@router.api_route("/v1.0/state/{store_name}", methods=["POST", "PUT"])
async def save_state(request: Request, store_name: str) -> Response:
    runtime = runtime_of(request)
    runtime.state.check_store(store_name)
    items = await wire.save_items(await request.body(), query_metadata(request))
    await runtime.state.save(store_name, items)
    return Response(status_code=NO_CONTENT)


@router.delete("/v1.0/state/{store_name}/{key:path}")
async def delete_state(request: Request, store_name: str, key: str) -> Response:
    params = request.query_params
    item = DeleteItem(
        key,
        request.headers.get("if-match") or None,
        query_metadata(request),
        params.get("concurrency", ""),
        params.get("consistency", ""),
    )
    await runtime_of(request).state.delete(store_name, item)
    return Response(status_code=NO_CONTENT)


@router.api_route("/v1.0/state/{store_name}/bulk", methods=["POST", "PUT"])
async def bulk_get_state(request: Request, store_name: str) -> Response:
    runtime = runtime_of(request)
    runtime.state.check_store(store_name)
    keys = await wire.bulk_get(await request.body(), query_metadata(request))
    items = await runtime.state.bulk_get(store_name, keys)
    return json_response(await map_items(_bulk_entry, items))


def _bulk_entry(item: BulkGetItem) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": item.key}
    if item.response is not None:
        entry["data"] = raw_json(item.response.value)
        if item.response.etag:
            entry["etag"] = item.response.etag
        if metadata := _item_metadata(item.response):
            entry["metadata"] = metadata
    if item.error:
        entry["error"] = item.error
    return entry


@router.api_route("/v1.0/state/{store_name}/transaction", methods=["POST", "PUT"])
async def transact_state(request: Request, store_name: str) -> Response:
    runtime = runtime_of(request)
    runtime.state.check_transactional(store_name)
    transaction = await wire.transaction(await request.body(), query_metadata(request))
    await runtime.state.transact(store_name, transaction)
    return Response(status_code=NO_CONTENT)


@router.api_route("/v1.0-alpha1/state/{store_name}/query", methods=["POST", "PUT"])
async def query_state(request: Request, store_name: str) -> Response:
    response = await runtime_of(request).state.query(store_name, await request.body(), query_metadata(request))
    if not response.results:
        return Response(status_code=NO_CONTENT)
    body: dict[str, Any] = {"results": await map_items(_query_entry, response.results)}
    if response.token:
        body["token"] = response.token
    if response.metadata:
        body["metadata"] = dict(response.metadata)
    return json_response(body)


def _query_entry(result: QueryResult) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": result.key, "data": raw_json(result.value)}
    if result.etag:
        entry["etag"] = result.etag
    return entry
