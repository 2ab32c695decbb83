"""The front door, observed: every API call measured in one place, around the route table's dispatch.

``create_app`` uses it instead of ``FrontDoor`` when the flags ask for metrics, API logging or a
``--config`` file; otherwise the plain door runs and nothing here costs anything. The status and the
response size are read off the ASGI messages as they are sent; with tracing, the request's trace headers
name the API call's span before the route runs, and the response carries them (as daprd's does).
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from starlette.types import Message, Receive, Scope, Send

from app.middleware import FrontDoor
from app.observability.paths import invoked_app

if TYPE_CHECKING:
    from app.observability.metrics import DaprMetrics

__all__ = ("ObservedFrontDoor", "count_request", "invoked_app")

#: How much of an error answer is kept to read its ``errorCode`` (``spec.metrics.recordErrorCodes``).
_ERROR_BODY_LIMIT = 4096


def count_request(metrics: DaprMetrics, scope: Scope, status: int, sent: int, seconds: float) -> None:
    """One API call in daprd's HTTP server metrics (and an invocation's counts): the one copy both lanes call,
    once the route answered ``status`` with ``sent`` body bytes."""
    received = 0
    for name, value in scope["headers"]:  # inline: this runs for every request
        if name == b"content-length":
            received = int(value) if value.isdigit() else 0
            break
    metrics.api_request(scope["method"], scope["path"], status, received, sent, seconds)


class ObservedFrontDoor(FrontDoor):
    """``FrontDoor`` with metrics, API logging and tracing around each request."""

    def lane_metrics(self) -> tuple[bool, DaprMetrics | None]:
        """API logging, tracing and error codes (read off the answer's body) are observed here only: while one
        is on, a lane leaves every request to this door."""
        observability = self.runtime.observability
        if observability is None:
            return True, None
        if observability.api_log is not None or observability.tracing is not None:
            return False, None
        metrics = observability.metrics
        if metrics is not None and metrics.record_error_codes:
            return False, None
        return True, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        observability = self.runtime.observability
        if scope["type"] != "http" or observability is None or not observability.measures:
            await FrontDoor.__call__(self, scope, receive, send)
            return
        started = perf_counter()
        status = 500  # what a request that fails before answering is counted as
        size = 0
        tracing = observability.tracing
        span = None
        if tracing is not None and "/healthz" not in scope["path"]:  # daprd traces no health check
            span = tracing.server(scope)
        echoed = [(n, v) for n, v in scope["headers"] if n == b"baggage"] if span is not None else []
        metrics = observability.metrics
        error_codes = metrics is not None and metrics.record_error_codes
        error_body = b""

        async def observed_send(message: Message) -> None:
            nonlocal status, size, error_body
            if message["type"] == "http.response.start":
                status = message["status"]
                if span is not None:
                    headers = list(message.get("headers", ()))
                    if not any(name == b"traceparent" for name, _ in headers):
                        headers += span.headers
                    message = {**message, "headers": headers + echoed}
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                size += len(body)
                if error_codes and status >= 400 and len(error_body) < _ERROR_BODY_LIMIT:
                    error_body += body
            await send(message)

        try:
            await FrontDoor.__call__(self, scope, receive, observed_send)
        finally:
            seconds = perf_counter() - started
            if span is not None:
                span.end(status)
            if metrics is not None:
                count_request(metrics, scope, status, size, seconds)
                if error_body:
                    metrics.error_body(error_body)
            api_log = observability.api_log
            if api_log is not None:
                method, path = scope["method"], scope["path"]
                template = self.routes.match(method, path).route.template if api_log.obfuscate else None
                api_log.request(method, path, template, status, size, seconds, scope)
