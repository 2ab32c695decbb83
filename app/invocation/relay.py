"""The response of an invocation, relayed to the caller as it arrives (or from a buffered error answer).

An answer that has arrived whole by the time it is relayed, or that announces a ``Content-Length`` up to the
invocation block's small-body size (it is read whole first, as daprd reads every answer), goes back in one
piece with its ``Content-Length``; a larger or chunked one goes back chunked as it arrives. Reading a small
answer whole spares each hop two writes and a wait per chunk: an app that writes its head and body apart
(uvicorn does) was otherwise relayed chunked, in three writes, through both sidecars.

While the body streams, the caller's connection is watched: when the caller goes away, the relay stops
and the upstream connection is closed instead of being read to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.http_client import HttpClientError
from building_blocks.invocation.body import SMALL_BODY
from building_blocks.invocation.headers import Headers, response_headers

__all__ = ("Relay", "Upstream", "whole_body")

log = logging.getLogger("layotto.invocation")


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class Upstream(Protocol):
    """A target's answer: ``app.http_client.Response``, or an external service's (``external.ExternalResponse``)."""

    @property
    def status_code(self) -> int: ...

    @property
    def raw_headers(self) -> Headers: ...

    @property
    def is_stream_consumed(self) -> bool: ...

    @property
    def content(self) -> bytes: ...

    def header(self, name: str) -> str | None: ...

    def ready_body(self) -> bytes | None: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aread(self) -> bytes: ...

    async def aclose(self) -> None: ...


async def whole_body(upstream: Upstream) -> bytes | None:
    """The answer's body when it has arrived whole, or when its announced length is small enough to wait for;
    ``None``: stream it."""
    ready = upstream.ready_body()
    if ready is not None:
        return ready
    length = upstream.header("content-length")
    if length is None or not length.isdigit() or int(length) > SMALL_BODY:
        return None
    try:
        return await upstream.aread()
    except HttpClientError as exc:
        log.warning("invocation response broke off: %s", exc)
        await upstream.aclose()
        raise


class Relay(Response):
    """Status, headers and body of ``upstream``; the body is streamed unless it was read already."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.status_code = upstream.status_code
        self.background: BackgroundTask | None = None
        self.raw_headers = response_headers(upstream.raw_headers)
        self._buffered = upstream.is_stream_consumed
        if self._buffered:
            self.raw_headers.append((b"content-length", str(len(upstream.content)).encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._buffered:
            ready = await whole_body(self.upstream)
            if ready is not None:  # the whole answer is here: no streaming, no watcher
                status = self.status_code
                if status >= 200 and status not in (204, 304) and scope.get("method") != "HEAD":
                    self.raw_headers.append((b"content-length", str(len(ready)).encode()))
                await send({"type": "http.response.start", "status": status, "headers": self.raw_headers})
                await send({"type": "http.response.body", "body": ready})
                return
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
        except HttpClientError as exc:
            log.warning("invocation response stream broke off: %s", exc)
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self.upstream.aclose()
        await send({"type": "http.response.body", "body": b""})
