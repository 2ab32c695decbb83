"""One pure-ASGI middleware for what Dapr does before routing, kept off the per-route path.

In order: clean the path (``//v1.0//state/s/`` is ``/v1.0/state/s``), check ``dapr-api-token`` when
``DAPR_API_TOKEN`` is set (health probes exempt), refuse bodies over ``--max-body-size`` (413), and hold
API calls until the components are initialised.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("SidecarMiddleware",)

_TOKEN_EXEMPT = ("/v1.0/healthz", "/v1.0/healthz/outbound")
_UNGATED_PREFIXES = ("/v1.0/healthz", "/v1.0/metadata", "/actuator/", "/v1.0/shutdown")


def _clean(path: str) -> str:
    if "//" not in path and "/." not in path and not (path.endswith("/") and path != "/"):
        return path
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned != "." else "/"


async def _send_plain(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class SidecarMiddleware:
    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.token = runtime.settings.api_token.encode()
        self.max_body = runtime.settings.max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _clean(scope["path"])
        if path is not scope["path"]:
            scope = {**scope, "path": path, "raw_path": path.encode()}
        headers = scope["headers"]
        if self.token and not (scope["method"] == "GET" and path in _TOKEN_EXEMPT):
            if (b"dapr-api-token", self.token) not in headers:
                await _send_plain(send, 401, b"invalid api token\n")
                return
            scope = {**scope, "headers": [h for h in headers if h[0] != b"dapr-api-token"]}
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await self._too_large(scope, receive, send)
                return
        if not self.runtime.ready and not path.startswith(_UNGATED_PREFIXES):
            await self.runtime.wait_settled()
        if scope["method"] in ("GET", "HEAD", "DELETE"):
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "ERR_BODY_READ", f"request body exceeds the limit of {self.max_body} bytes")
        await response(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Counts chunked bodies too: past the limit the request fails with 413 before the route sees it all."""
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large(scope, receive, send)
