"""The channel into the local app (``--app-port``): one pooled keep-alive HTTP client (``app.http_client``).

Everything the sidecar sends to the app goes through ``request`` (pub/sub deliveries, configuration updates,
``/dapr/subscribe``, health probes: the answer read whole; errors as ``app.http_client.HttpClientError``)
or ``send`` (invocations: bodies streamed both ways); both add ``dapr-api-token`` when
``APP_API_TOKEN`` is set. With ``--app-max-concurrency N`` at most N of them are in the app at once (until
the app's answer head arrives); the others wait their turn, as in Dapr (health probes are not counted).
Dapr reports itself healthy only once the app's port accepts connections; ``wait_until_listening``
polls it, without busy-looping, until it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, Callable, Mapping
from time import perf_counter
from typing import TYPE_CHECKING

from app.http_client import Exchange, HttpClient, ReadTimeout, Response, request_target
from building_blocks.invocation.body import SMALL_BODY

if TYPE_CHECKING:
    from app.observability.metrics import DaprMetrics
    from app.observability.tracing import Tracing

__all__ = ("AppChannel",)

log = logging.getLogger("layotto.app_channel")
POLL_INTERVAL = 0.05
DEFAULT_TIMEOUT = 60.0
#: Invocations have no overall deadline (Dapr imposes none); connecting must not hang, though.
CONNECT_TIMEOUT = 5.0


class AppChannel:
    """The local app at ``address:port``."""

    #: An HTTP request needs a verb: a gRPC ``InvokeService`` sent without one is refused (as daprd's HTTP channel).
    needs_verb = True

    def __init__(self, address: str, port: int, api_token: str = "", max_concurrency: int = -1) -> None:
        self.address = address
        self.port = port
        self.listening = False
        self._listening = asyncio.Event()
        self.api_token = api_token
        self._token = [(b"dapr-api-token", api_token.encode())] if api_token else []
        self._http = HttpClient(connect_timeout=CONNECT_TIMEOUT)
        #: Dapr's HTTP client metrics (``app.observability``); None: not measured, at no cost.
        self.metrics: DaprMetrics | None = None
        #: Spans of pub/sub deliveries (``app.postman``); None: tracing is off.
        self.tracing: Tracing | None = None
        #: ``--app-max-concurrency`` (-1, the default, or 0: no limit and no cost).
        self._slots = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None
        #: Whether an invocation may be sent with ``exchange`` (plain HTTP, no slots to take, no pipeline).
        self.exchanges = self._slots is None
        host = f"[{address}]" if ":" in address else address
        self._display = f"http://{host}:{port}" if port != 80 else f"http://{host}"

    async def request(
        self,
        method: str,
        path: str,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        probe: bool = False,
    ) -> Response:
        """One request to the app, its answer read whole (``content``); raises ``HttpClientError`` when it can't
        be made or times out (``ReadTimeout``, waiting for a slot included). ``path`` may carry a query
        (``/path?a=1``). A health ``probe`` takes no ``--app-max-concurrency`` slot.
        """
        if self.metrics is None:
            return await self._request(method, path, content, headers, timeout, probe)
        started, status, received = perf_counter(), 500, 0  # 500: no answer, as daprd counts it
        try:
            answer = await self._request(method, path, content, headers, timeout, probe)
            status, received = answer.status_code, len(answer.content)
            return answer
        finally:
            seconds = perf_counter() - started
            self.metrics.app_call(method, path.partition("?")[0], status, len(content or b""), received, seconds, probe)

    async def _request(
        self,
        method: str,
        path: str,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,
        probe: bool,
    ) -> Response:
        path, _, query = path.partition("?")
        raw = [(name.lower().encode("latin-1"), value.encode()) for name, value in (headers or {}).items()]
        target = request_target(path, query.encode("latin-1"))
        slots = None if probe else self._slots
        try:
            async with asyncio.timeout(timeout if timeout is not None else DEFAULT_TIMEOUT):
                if slots is None:
                    answer = await self._http.request(
                        method, self.address, self.port, target, raw + self._token, content or b""
                    )
                else:
                    async with slots:
                        answer = await self._http.request(
                            method, self.address, self.port, target, raw + self._token, content or b""
                        )
                try:
                    await answer.aread()
                finally:
                    await answer.aclose()
        except TimeoutError:
            raise ReadTimeout("timed out") from None
        return answer

    def route_through(self, wrap: Callable[[HttpClient], HttpClient]) -> None:
        """Send every call into the app through ``wrap(client)`` (``spec.appHttpPipeline``: app.governance)."""
        self._http = wrap(self._http)
        self.exchanges = False  # the pipeline's client takes every call

    @staticmethod
    def target(path: str, query: bytes = b"") -> bytes:
        """The request target for ``path`` (unescaped, encoded here) and a raw query string."""
        return request_target(path, query)

    def url(self, target: bytes) -> str:
        """The app's URL for a request target, as error messages show it."""
        return self._display + target.decode("ascii")

    async def send(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes],
        length: int | None,
    ) -> Response:
        """One invocation (``app.http_client``): the answer's body is streamed, redirects are not followed.

        The caller sets every header; ``dapr-api-token`` is set here when ``APP_API_TOKEN`` is configured.
        Raises ``app.http_client.HttpClientError`` when the app can't be reached or the exchange breaks.
        """
        if self._token:
            headers = headers + self._token
        metrics = self.metrics
        sending = (
            self._http.request(method, self.address, self.port, target, headers, body, length)
            if self._slots is None
            else self._in_turn(method, target, headers, body, length)
        )
        if metrics is None:
            return await sending
        # Measured here, not in a wrapping coroutine: one frame less on every invocation's way in and out.
        started, status, received = perf_counter(), 500, 0
        try:
            answer = await sending
            status = answer.status_code
            size = answer.header("content-length")
            received = int(size) if size is not None and size.isdigit() else 0
            return answer
        finally:
            sent = len(body) if isinstance(body, bytes) else (length or 0)
            metrics.app_invocation(method, target, status, sent, received, perf_counter() - started)

    def exchange(
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes, exchange: Exchange
    ) -> bool:
        """``send`` of a whole body, on an idle connection and without a task (``HttpClient.exchange``; an answer
        up to the invocation block's small-body size is waited for whole); ``False``: nothing sent. The
        exchange records the call in the metrics (``metrics.app_invocation``), as ``send`` does."""
        if self._token:
            headers = headers + self._token
        return self._http.exchange(method, self.address, self.port, target, headers, body, exchange, SMALL_BODY)

    async def _in_turn(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes],
        length: int | None,
    ) -> Response:
        """``--app-max-concurrency``: the request waits for a slot, held until its answer's head arrives."""
        assert self._slots is not None
        async with self._slots:
            return await self._http.request(method, self.address, self.port, target, headers, body, length)

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
        await self._http.aclose()
