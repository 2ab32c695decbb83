"""The response of an invocation, relayed to the caller as it arrives (or from a buffered error answer).

While the body streams, the caller's connection is watched: when the caller goes away, the relay stops
and the upstream connection is closed instead of being read to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.invocation.headers import response_headers

__all__ = ("Relay",)

log = logging.getLogger("layotto.invocation")


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class Relay(Response):
    """Status, headers and body of ``upstream``; the body is streamed unless it was read already."""

    def __init__(self, upstream: httpx.Response) -> None:
        self.upstream = upstream
        self.status_code = upstream.status_code
        self.background: BackgroundTask | None = None
        self.raw_headers = response_headers(upstream.headers.raw)
        self._buffered = upstream.is_stream_consumed
        if self._buffered:
            self.raw_headers.append((b"content-length", str(len(upstream.content)).encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self._buffered:
            await send({"type": "http.response.body", "body": self.upstream.content})
            return
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            async for chunk in self.upstream.aiter_raw():
                if watcher.done():
                    log.info("the caller went away; invocation response dropped")
                    return
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as exc:
            log.warning("invocation response stream broke off: %s", exc)
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self.upstream.aclose()
        await send({"type": "http.response.body", "body": b""})
