"""The channel into the local app (``--app-port``): one pooled keep-alive HTTP client, created once.

Everything the sidecar sends to the app (pub/sub deliveries, configuration updates, ``/dapr/subscribe``,
invocations) goes through ``request``, which adds ``dapr-api-token`` when ``APP_API_TOKEN`` is set.
Dapr reports itself healthy only once the app's port accepts connections; ``wait_until_listening``
polls it, without busy-looping, until it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

__all__ = ("AppChannel", "no_cookies")

log = logging.getLogger("layotto.app_channel")
POLL_INTERVAL = 0.05
DEFAULT_TIMEOUT = 60.0


def no_cookies() -> CookieJar:
    """A cookie jar that keeps nothing: a sidecar relays ``Set-Cookie``, it never stores it."""
    return CookieJar(DefaultCookiePolicy(allowed_domains=[]))


class AppChannel:
    """The local app at ``address:port``."""

    def __init__(self, address: str, port: int, api_token: str = "") -> None:
        self.address = address
        self.port = port
        self.listening = False
        self._listening = asyncio.Event()
        headers = {"dapr-api-token": api_token} if api_token else {}
        self._client = httpx.AsyncClient(
            base_url=f"http://{address}:{port}",
            headers=headers,
            timeout=DEFAULT_TIMEOUT,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            trust_env=False,
            cookies=no_cookies(),
        )
        self.api_token = api_token

    async def request(
        self,
        method: str,
        path: str,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One request to the app; raises ``httpx.HTTPError`` when it can't be made or times out."""
        if not path.startswith("/"):
            path = "/" + path
        return await self._client.request(
            method, path, content=content, headers=headers, timeout=timeout if timeout is not None else DEFAULT_TIMEOUT
        )

    def url(self, path: str, query: bytes = b"") -> httpx.URL:
        """The app's URL for ``path`` (unescaped, encoded here) and a raw query string."""
        return httpx.URL(scheme="http", host=self.address, port=self.port, path="/" + path.lstrip("/"), query=query)

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Send a prepared request (invocations): the response body is streamed, redirects are not followed.

        The caller sets every header; ``dapr-api-token`` is set here when ``APP_API_TOKEN`` is configured.
        """
        if self.api_token:
            request.headers["dapr-api-token"] = self.api_token
        return await self._client.send(request, stream=True)

    async def wait_until_listening(self) -> None:
        while True:
            try:
                _, writer = await asyncio.open_connection(self.address, self.port)
            except OSError:
                await asyncio.sleep(POLL_INTERVAL)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self.listening = True
            self._listening.set()
            log.info("app is listening on %s:%d", self.address, self.port)
            return

    async def listening_event(self) -> None:
        """Wait until the app's port has accepted a connection once."""
        await self._listening.wait()

    async def close(self) -> None:
        await self._client.aclose()
