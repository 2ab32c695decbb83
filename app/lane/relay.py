"""Writing a route's ``Response`` on the lane: a plain answer in one write, an invocation's answer relayed.

An invocation's ``app.invocation.relay.Relay`` is written as its ``__call__`` sends it over ASGI: an answer
that arrived whole (or is small: ``whole_body``) goes back in one write with its ``Content-Length``; a streamed
one goes back chunked as it
arrives, at the pace the caller reads (the cycle waits while the socket's buffer is full, and the upstream
client pauses reading meanwhile), and stops, closing the upstream connection, when the caller goes away.
"""

from __future__ import annotations

import logging

from starlette.responses import Response

from app.http_client import HttpClientError
from app.invocation.relay import Relay, whole_body
from app.lane.cycle import LaneCycle, Serve

__all__ = ("serve_refusal", "write_response")

log = logging.getLogger("layotto.invocation")


async def write_response(cycle: LaneCycle, response: Response) -> None:
    if isinstance(response, Relay):
        await _relay(cycle, response)
        return
    cycle.respond(response.status_code, response.raw_headers, bytes(response.body))
    if response.background is not None:
        await response.background()


def serve_refusal(response: Response) -> Serve:
    """Serves a door's refusal (it reads no body: its cycle runs eagerly)."""

    async def refuse(cycle: LaneCycle) -> None:
        await write_response(cycle, response)

    return refuse


async def _relay(cycle: LaneCycle, relay: Relay) -> None:
    upstream = relay.upstream
    status, headers = relay.status_code, relay.raw_headers
    buffered = upstream.is_stream_consumed  # read by the block (an error answer): Relay gave it its length
    if not buffered:
        ready = await whole_body(upstream)
        if ready is not None:  # the whole answer is here
            if status >= 200 and status not in (204, 304) and cycle.method != "HEAD":
                headers.append((b"content-length", str(len(ready)).encode()))
            cycle.respond(status, headers, ready)
            return
    if buffered:
        cycle.respond(status, headers, upstream.content)
        return
    cycle.start(status, headers)
    try:
        async for chunk in upstream.aiter_raw():
            if cycle.disconnected:
                log.info("the caller went away; invocation response dropped")
                return
            await cycle.send(chunk)
    except HttpClientError as exc:
        log.warning("invocation response stream broke off: %s", exc)
        raise
    finally:
        await upstream.aclose()
    cycle.finish()
