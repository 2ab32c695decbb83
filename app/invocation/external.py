"""Invocations of HTTPEndpoints and URLs: the one place the sidecar uses httpx (https, redirects followed).

Why a second client: the app channel and the hop talk to peers the sidecar knows (its own app, other
sidecars) over one plain or mutually authenticated HTTP/1.1 connection each, which the lean client of
``app.http_client`` does at a third of the CPU. An external target is any server on the internet: TLS
with server certificates checked against the system's CAs and host names, redirects, cookie handling and
the many ways real servers bend HTTP are what httpx, a well-kept library, already does right; rewriting
that for a path that is not hot would trade correctness for nothing.

Imported on the first such invocation only, so a sidecar that never calls an external service does not
pay httpx's import time and memory. httpx's errors come out as ``app.http_client`` errors, so callers
handle one family of transport errors whichever client made the request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from app.http_client import ConnectError, ConnectTimeout, HttpClientError
from building_blocks.invocation.body import RequestBody
from building_blocks.invocation.headers import Headers

__all__ = ("ExternalClient", "ExternalResponse")

#: No overall deadline (Dapr imposes none); connecting must not hang, though.
TIMEOUTS = {"connect": 5.0, "read": None, "write": None, "pool": None}


def _no_cookies() -> CookieJar:
    """A cookie jar that keeps nothing: a sidecar relays ``Set-Cookie``, it never stores it."""
    return CookieJar(DefaultCookiePolicy(allowed_domains=[]))


def _client_error(exc: httpx.HTTPError) -> HttpClientError:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectTimeout(text)
    if isinstance(exc, httpx.ConnectError):
        return ConnectError(text)
    return HttpClientError(text)


class ExternalResponse:
    """An httpx answer seen as an ``app.invocation.relay.Upstream``."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self.raw_headers: Headers = list(response.headers.raw)

    @property
    def is_stream_consumed(self) -> bool:
        return self.response.is_stream_consumed

    @property
    def content(self) -> bytes:
        return self.response.content

    def header(self, name: str) -> str | None:
        value: str | None = self.response.headers.get(name)
        return value

    def ready_body(self) -> bytes | None:
        return None

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise _client_error(exc) from None

    async def aread(self) -> bytes:
        try:
            return await self.response.aread()
        except httpx.HTTPError as exc:
            raise _client_error(exc) from None

    async def aclose(self) -> None:
        await self.response.aclose()


class ExternalClient:
    """One pooled httpx client for every HTTPEndpoint and URL target."""

    def __init__(self) -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        self._client = httpx.AsyncClient(trust_env=False, cookies=_no_cookies(), limits=limits, follow_redirects=True)

    @staticmethod
    def url(base_url: str, method: str, query: bytes) -> httpx.URL:
        """``method`` under ``base_url``, with the caller's raw query."""
        base = httpx.URL(base_url)
        return base.copy_with(path=base.path.rstrip("/") + "/" + method, query=query or None)

    async def send(self, verb: str, url: httpx.URL, headers: Headers, body: RequestBody) -> ExternalResponse:
        """The answer, its body streamed; raises ``app.http_client.HttpClientError`` when the call fails."""
        content = body.content()
        if body.length is not None and not isinstance(content, bytes):
            headers = [*headers, (b"content-length", str(body.length).encode())]
        request = httpx.Request(verb, url, headers=headers, content=content, extensions={"timeout": TIMEOUTS})
        try:
            return ExternalResponse(await self._client.send(request, stream=True))
        except httpx.HTTPError as exc:
            raise _client_error(exc) from None

    async def aclose(self) -> None:
        await self._client.aclose()
