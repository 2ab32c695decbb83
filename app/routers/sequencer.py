"""Sequencer API (Layotto's, over HTTP in Dapr's style): ``POST /v1.0-alpha1/sequencer/{store}``.

* ``{"key", "options": {"increment": "WEAK"|"STRONG"}, "metadata"}`` -> ``200 {"nextId": "<int64>"}``
* ``{"key", "size"}`` -> ``200 {"from": "<int64>", "to": "<int64>"}``: ``size`` consecutive ids.

Ids are strings, so JavaScript clients keep every digit (Layotto's ``jstype = JS_STRING``). The route decodes
(``app.wire.sequencer``; the body is read before any check), calls the block, encodes.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.http import json_response, runtime_of
from app.routing import Router
from app.wire import sequencer as wire
from building_blocks.sequencer.base import SegmentRequest

__all__ = ("router",)

router = Router()


@router.post("/v1.0-alpha1/sequencer/{store_name}")
async def next_id(request: Request, store_name: str) -> Response:
    decoded = wire.request(await request.body(), store_name)
    sequencer = runtime_of(request).sequencer
    if isinstance(decoded, SegmentRequest):
        segment = await sequencer.segment(store_name, decoded)
        return json_response({"from": str(segment.first), "to": str(segment.last)})
    return json_response({"nextId": str(await sequencer.next_id(store_name, decoded))})
