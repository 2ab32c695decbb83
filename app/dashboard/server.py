"""The dashboard's server: the page at ``/``, what it draws at ``/api/sidecars``; loopback only by default."""

from __future__ import annotations

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from app.dashboard.collect import collect
from app.dashboard.page import PAGE

__all__ = ("app", "serve")


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


async def sidecars(request: Request) -> JSONResponse:
    return JSONResponse(await collect(), headers={"cache-control": "no-store"})


app = Starlette(routes=[Route("/", page), Route("/api/sidecars", sidecars)])


def serve(port: int, address: str = "127.0.0.1") -> int:
    """Serve until interrupted; the exit code."""
    print(f"Layotto dashboard on http://{address}:{port}/", flush=True)
    uvicorn.run(app, host=address, port=port, log_level="warning", server_header=False)
    return 0
