"""Configuration API: Dapr's ``/v1.0[-alpha1]/configuration/...`` routes, plus Layotto's writes.

Dapr's API (all GET, under ``/v1.0`` and ``/v1.0-alpha1``):
* ``/configuration/{store}?key=a&key=b`` -> 200 ``{"a": {"value", "version", "metadata"}}`` (every item when
  no key is given), 204 when there is none;
* ``/configuration/{store}/subscribe?key=...`` -> ``{"id": "<subscription id>"}``; updates are POSTed to the
  app (see ``app.configuration_delivery``);
* ``/configuration/{store}/{id}/unsubscribe`` -> ``{"ok": true}`` (``{"ok": false, "message"}`` with 500).

Extension, NOT part of Dapr's API (Layotto's SaveConfiguration / DeleteConfiguration, only under
``/v1.0-alpha1``):
* ``POST /v1.0-alpha1/configuration/{store}`` ``{"items": [{"key", "value", "metadata"}], "metadata": {}}``
  -> 204; the store assigns each item a new version;
* ``DELETE /v1.0-alpha1/configuration/{store}?key=a&key=b`` -> 204.
Subscribers see these writes like any other change.

Each route decodes (``app.wire.configuration``), calls the block, encodes; a save checks its store before
reading the body, as Dapr's routes do.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.configuration_delivery import items_json
from app.http import json_response, runtime_of
from app.routing import Router
from app.wire import configuration as wire

__all__ = ("router",)

router = Router()
NO_CONTENT = 204


@router.get("/v1.0/configuration/{store_name}")
@router.get("/v1.0-alpha1/configuration/{store_name}")
async def get_configuration(request: Request, store_name: str) -> Response:
    items = await runtime_of(request).configuration.get(store_name, wire.get(request.scope["query_string"]))
    if not items:
        return Response(status_code=NO_CONTENT)
    return json_response(items_json(items))


@router.get("/v1.0/configuration/{store_name}/subscribe")
@router.get("/v1.0-alpha1/configuration/{store_name}/subscribe")
async def subscribe_configuration(request: Request, store_name: str) -> Response:
    subscribe = wire.subscribe(request.scope["query_string"])
    subscription_id = await runtime_of(request).configuration.subscribe(store_name, subscribe)
    return json_response({"id": subscription_id})


@router.get("/v1.0/configuration/{store_name}/{subscription_id}/unsubscribe")
@router.get("/v1.0-alpha1/configuration/{store_name}/{subscription_id}/unsubscribe")
async def unsubscribe_configuration(request: Request, store_name: str, subscription_id: str) -> Response:
    await runtime_of(request).configuration.unsubscribe(store_name, subscription_id)
    return json_response({"ok": True})


@router.post("/v1.0-alpha1/configuration/{store_name}")
async def save_configuration(request: Request, store_name: str) -> Response:
    """Not Dapr: Layotto's SaveConfiguration."""
    configuration = runtime_of(request).configuration
    configuration.check_store(store_name)
    await configuration.save(store_name, wire.save(await request.body(), request.scope["query_string"]))
    return Response(status_code=NO_CONTENT)


@router.delete("/v1.0-alpha1/configuration/{store_name}")
async def delete_configuration(request: Request, store_name: str) -> Response:
    """Not Dapr: Layotto's DeleteConfiguration."""
    await runtime_of(request).configuration.delete(store_name, wire.delete(request.scope["query_string"]))
    return Response(status_code=NO_CONTENT)
