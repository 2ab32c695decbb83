"""An app for the tracing test: ``/work`` reads state through its sidecar, passing on the trace it was given
(as an app instrumented with OpenTelemetry would), and answers with the ``traceparent`` it received."""

from __future__ import annotations

import os

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SIDECAR = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}"


async def work(request: Request) -> JSONResponse:
    parent = request.headers.get("traceparent", "")
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(f"{SIDECAR}/v1.0/state/statestore/traced", headers={"traceparent": parent})
    return JSONResponse({"traceparent": parent, "state": answer.status_code})


app = Starlette(routes=[Route("/work", work, methods=["GET", "POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), log_level="warning")
