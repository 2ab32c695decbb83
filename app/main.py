"""``create_app(settings)``: the FastAPI app, its routers, error handling and lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.errors import ApiError, error_response, render_error
from app.middleware import SidecarMiddleware
from app.routers import configuration, health, invoke, lock, metadata, publish, secrets, sequencer, state
from app.runtime import Runtime
from app.settings import Settings
from building_blocks.errors import LayottoError

__all__ = ("Sidecar", "create_app")


class Sidecar(FastAPI):
    """The FastAPI app behind the sidecar's front door (``app.middleware``), which every request enters."""

    front: SidecarMiddleware

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Sidecar:
    """The sidecar app. Pass a prepared ``runtime`` to reuse it; otherwise one is made from ``settings``."""
    runtime = runtime or Runtime(settings or Settings.from_environment())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.close()

    app = Sidecar(
        title="Layotto for Python",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.runtime = runtime
    for module in (health, metadata, state, secrets, publish, lock, sequencer, configuration, invoke):
        app.include_router(module.router)
    app.include_router(invoke.fallback_router)  # last: every unmatched path and method

    async def domain_error(request: Request, exc: Exception) -> Response:
        return render_error(exc, runtime.settings.app_id)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, "ERR_BAD_REQUEST", str(exc.detail))

    async def validation_error(request: Request, exc: Exception) -> Response:
        return error_response(400, "ERR_MALFORMED_REQUEST", str(exc))

    app.add_exception_handler(LayottoError, domain_error)
    app.add_exception_handler(ApiError, domain_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, domain_error)
    app.front = SidecarMiddleware(super(Sidecar, app).__call__, runtime, framework=app)
    return app
