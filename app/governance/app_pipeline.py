"""``spec.appHttpPipeline``: the middleware handlers around every call this sidecar makes into its app over
HTTP (invocations, deliveries, configuration updates, ``/dapr/subscribe``), as daprd's HTTP app channel
applies them, inside the ``--app-max-concurrency`` slot. A handler that answers itself (429, 400, 401...)
is the app's answer for the caller; headers a handler adds go onto the app's answer. There is no pipeline
for a gRPC app (nor in daprd)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Sequence
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response as Answer

from app.governance.pipeline import Middleware, Next
from app.http_client import HttpClient, Response

__all__ = ("PipelinedClient",)


class _Passed(Answer):
    """What a handler sees when the call went through: the app's answer, carried (not re-sent)."""

    def __init__(self, upstream: Response) -> None:
        self.upstream = upstream
        self.status_code = upstream.status_code
        self.raw_headers = []
        self.background = None


class PipelinedClient(HttpClient):
    """The app channel's client, each call behind the middlewares (first listed outermost)."""

    def __init__(self, inner: HttpClient, middlewares: Sequence[Middleware]) -> None:
        super().__init__(inner.connect_timeout, inner.max_idle_per_host)
        self.inner = inner
        self.middlewares = tuple(middlewares)

    async def request(
        self,
        method: str,
        host: str,
        port: int,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: bytes | AsyncIterable[bytes] = b"",
        length: int | None = None,
    ) -> Response:
        headers = list(headers)
        path, _, query = target.partition(b"?")
        scope: dict[str, Any] = {
            "type": "http",
            "method": method,
            "path": path.decode("latin-1"),
            "raw_path": path,
            "query_string": query,
            "headers": headers,
            "client": None,
        }

        async def call() -> Answer:
            return _Passed(await self.inner.request(method, host, port, target, headers, body, length))

        proceed: Next = call
        request = Request(scope)
        for middleware in reversed(self.middlewares):
            proceed = partial(middleware, request, proceed)
        answer = await proceed()
        if isinstance(answer, _Passed):
            answer.upstream.raw_headers.extend(answer.raw_headers)
            return answer.upstream
        return Response.answered(answer.status_code, list(answer.raw_headers), bytes(answer.body))

    async def aclose(self) -> None:
        await self.inner.aclose()
