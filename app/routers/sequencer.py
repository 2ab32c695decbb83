"""Sequencer API (Layotto's, over HTTP in Dapr's style): ``POST /v1.0-alpha1/sequencer/{store}``.

* ``{"key", "options": {"increment": "WEAK"|"STRONG"}, "metadata"}`` -> ``200 {"nextId": "<int64>"}``
* ``{"key", "size"}`` -> ``200 {"from": "<int64>", "to": "<int64>"}``: ``size`` consecutive ids.

Ids are strings, so JavaScript clients keep every digit (Layotto's ``jstype = JS_STRING``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.http import json_response, optional_json_body, runtime_of
from app.routing import Router

__all__ = ("router",)

router = Router()


@router.post("/v1.0-alpha1/sequencer/{store_name}")
async def next_id(request: Request, store_name: str) -> Response:
    body = await optional_json_body(request, "failed deserializing HTTP body: ")
    sequencer = runtime_of(request).sequencer
    if isinstance(body, dict) and "size" in body:
        segment = await sequencer.segment(store_name, body)
        return json_response({"from": str(segment.first), "to": str(segment.last)})
    return json_response({"nextId": str(await sequencer.next_id(store_name, body))})
