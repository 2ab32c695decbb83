"""What the sidecar observes, decided once at start-up from the flags and the ``--config`` file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from app.app_channel import AppChannel
from app.observability.logs import ApiLog
from app.observability.metrics import DaprMetrics, MetricsLayer
from app.observability.server import MetricsServer
from app.settings import Settings
from building_blocks.configuration_spec import ConfigurationSpec, OtelSpec, TracingSpec
from building_blocks.runtime import Runtime as Core

if TYPE_CHECKING:
    from app.observability.tracing import Tracing

__all__ = ("Observability", "wanted")

log = logging.getLogger("layotto.runtime")


def _otlp_variable(environ: Mapping[str, str], name: str) -> str:
    return environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(f"OTEL_EXPORTER_OTLP_{name}") or ""


def tracing_from_environment(spec: TracingSpec | None, environ: Mapping[str, str]) -> TracingSpec | None:
    """daprd's fallback when ``spec.tracing.otel.endpointAddress`` is empty: OpenTelemetry's own variables
    (``OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT``, ``_PROTOCOL``, ``_HEADERS``, ``_TIMEOUT`` in ms, and
    ``OTEL_EXPORTER_OTLP_INSECURE``), sampling everything unless the file says otherwise."""
    if spec is not None and spec.otel is not None and spec.otel.endpoint_address:
        return spec
    endpoint = _otlp_variable(environ, "ENDPOINT").strip()
    if not endpoint:
        return spec
    protocol = "http" if _otlp_variable(environ, "PROTOCOL").lower().startswith("http") else "grpc"
    headers = tuple(
        (name.strip(), urllib.parse.unquote(value.strip()))
        for name, _, value in (item.partition("=") for item in _otlp_variable(environ, "HEADERS").split(","))
        if name.strip()
    )
    timeout = _otlp_variable(environ, "TIMEOUT")
    insecure = environ.get("OTEL_EXPORTER_OTLP_INSECURE", "").lower() == "true" or endpoint.startswith("http://")
    otel = OtelSpec(
        endpoint_address=endpoint.removeprefix("http://").removeprefix("https://").rstrip("/"),
        protocol=protocol,
        is_secure=not insecure,
        headers=headers,
        timeout=int(timeout) / 1000 if timeout.isdigit() else None,
    )
    return replace(spec if spec is not None else TracingSpec(sampling_rate=1.0), otel=otel)


def wanted(settings: Settings) -> bool:
    """Whether the front door must measure at all: known from the flags alone (the file may switch parts off)."""
    return (
        settings.enable_metrics
        or bool(settings.enable_api_logging)
        or settings.config_file is not None
        or bool(_otlp_variable(settings.environ, "ENDPOINT"))
    )


@dataclass(slots=True)
class Observability:
    """The parts switched on (None = off)."""

    metrics: DaprMetrics | None = None
    metrics_server: MetricsServer | None = None
    api_log: ApiLog | None = None
    tracing: Tracing | None = None

    @classmethod
    def configure(cls, settings: Settings, spec: ConfigurationSpec) -> Observability:
        metrics = None
        if settings.enable_metrics and spec.metrics.enabled:
            metrics = DaprMetrics(settings.app_id, settings.namespace, spec.metrics)
            if spec.metrics.http.increased_cardinality is None and spec.source:
                log.warning(
                    "%s: spec.metrics.http.increasedCardinality is not set: the path label keeps every path "
                    "(Dapr's default; set it to false, with pathMatching, to bound the series)",
                    spec.source,
                )
        server = None
        if settings.enable_metrics:  # daprd serves the listener even when the Configuration disables metrics
            render = metrics.exposition if metrics is not None else str
            recent = metrics.recent if metrics is not None else None
            server = MetricsServer(render, settings.listen_address or "127.0.0.1", settings.metrics_port, recent)
        api_logging = settings.enable_api_logging  # an explicit flag wins over the file, either way
        if api_logging is None:
            api_logging = spec.api_logging.enabled
        tracing = None
        tracing_spec = tracing_from_environment(spec.tracing, settings.environ)
        if tracing_spec is not None and tracing_spec.enabled:
            from app.observability.tracing import Tracing  # OpenTelemetry is loaded only when tracing is on

            tracing = Tracing(tracing_spec, settings.app_id)
        return cls(metrics, server, ApiLog(spec.api_logging) if api_logging else None, tracing)

    @property
    def measures(self) -> bool:
        """Whether the front door has anything to do per request."""
        return self.metrics is not None or self.api_log is not None or self.tracing is not None

    def attach(self, core: Core, channel: AppChannel | None) -> None:
        """Apply the component-call layers to every block of ``core``, and measure the app channel."""
        metrics = self.metrics
        if metrics is not None:
            core.add_layer(MetricsLayer(metrics))
            if channel is not None:
                channel.metrics = metrics
            name = ",".join(core.resiliency.names)  # the Resiliency resource(s) the policies come from
            core.resiliency.listeners.append(
                lambda policy, target, status: metrics.resiliency_activated(name, policy, target, status)
            )
        if self.tracing is not None:
            from app.observability.tracing import TracingLayer

            core.add_layer(TracingLayer(self.tracing))
            if channel is not None:
                channel.tracing = self.tracing

    async def start(self, stack: contextlib.AsyncExitStack, core: Core) -> None:
        """Listen for scrapes, and count the components' initialisation once it is over."""
        if self.metrics_server is not None and await self.metrics_server.start():
            stack.push_async_callback(self.metrics_server.close)
        if self.tracing is not None:
            stack.push_async_callback(self.tracing.shutdown)  # flushes the last spans
        if self.metrics is not None:
            task = asyncio.create_task(self._count_components(core))
            stack.push_async_callback(_cancel, task)

    async def _count_components(self, core: Core) -> None:
        await core.wait_settled()
        assert self.metrics is not None
        for loaded in core.components:
            spec = loaded.spec
            self.metrics.init_component(spec.type, spec.name, None if loaded.ready else "init")
        for name in core.resiliency.names:
            self.metrics.resiliency_loaded.inc((name, core.context.namespace))


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
