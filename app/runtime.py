"""The sidecar's runtime: the domain runtime (``building_blocks.runtime``) plus what reaches the app.

The domain runtime loads the specs and builds the components and blocks; this adds the HTTP side on the
same kind of stack: the app channel, app health checks, service invocation (the relay to other sidecars and
to the app) and the subscriptions' postman, started once the components are ready and the app listens.
``prepare()`` fails with a ``SpecError`` before anything is served; ``start()`` connects in the background
while ``/v1.0/healthz`` answers 500; ``close()`` releases everything in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson

from app.app_channel import AppChannel
from app.app_health import AppHealth
from app.configuration_delivery import app_delivery
from app.governance import front as governance
from app.invocation.invoker import Invoker
from app.observability.setup import Observability
from app.postman import HttpPostman
from app.settings import Settings
from building_blocks.errors import SpecError
from building_blocks.pubsub.subscriptions import SubscriptionSpec, from_programmatic
from building_blocks.runtime import LoadedComponent, RuntimeConfig
from building_blocks.runtime import Runtime as Core

__all__ = ("LoadedComponent", "Runtime")

log = logging.getLogger("layotto.runtime")


class Runtime:
    """The domain runtime (``core``, whose blocks and components are reachable here too) and the app side."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app_channel = _app_channel(settings) if settings.app_port else None
        self.core = Core(
            RuntimeConfig(
                app_id=settings.app_id,
                resources_paths=settings.resources_paths,
                namespace=settings.namespace,
                environ=settings.environ,
                advertised_host=settings.advertised_host,
                internal_port=settings.internal_port if self.app_channel is not None else 0,
                peer_port=settings.internal_port,
                configuration_file=settings.config_file,
            )
        )
        core = self.core
        self.state = core.state
        self.secrets = core.secrets
        self.pubsub = core.pubsub
        self.lock = core.lock
        self.sequencer = core.sequencer
        self.configuration = core.configuration
        self.components = core.components
        self.extended: dict[str, str] = {}
        #: Called by ``POST /v1.0/shutdown`` (``force`` = skip the graceful drain); set by the server.
        self.shutdown_handler: Callable[[bool], None] = lambda force: log.warning("shutdown requested, no server")
        #: Configuration subscriptions deliver to the app; without an app channel, subscribing fails.
        self.configuration.delivery = app_delivery(self.app_channel) if self.app_channel is not None else None
        #: App health checks (``--enable-app-health-check``); subscriptions pause while the app is unhealthy.
        self.app_health = (
            AppHealth(
                self.app_channel,
                settings.app_health_check_path,
                settings.app_health_probe_interval,
                settings.app_health_probe_timeout,
                settings.app_health_threshold,
            )
            if settings.enable_app_health_check and self.app_channel is not None
            else None
        )
        #: Service invocation, built on the core's name resolver at the end of ``prepare()``.
        self.invocation: Invoker | None = None
        #: Metrics, API logging, tracing: what the flags and the ``--config`` file switch on (``prepare()``).
        self.observability: Observability | None = None
        self._started = False
        self._stack = contextlib.AsyncExitStack()
        if self.app_channel is not None:
            self._stack.push_async_callback(self.app_channel.close)
        self._stack.push_async_callback(core.close)

    @property
    def ready(self) -> bool:
        return self.core.ready

    @property
    def failure(self) -> str:
        return self.core.failure

    @property
    def on_failure(self) -> Callable[[str], None]:
        return self.core.on_failure

    @on_failure.setter
    def on_failure(self, callback: Callable[[str], None]) -> None:
        self.core.on_failure = callback

    async def wait_ready(self) -> None:
        await self.core.wait_ready()

    async def wait_settled(self) -> None:
        """Until start-up has either succeeded or failed."""
        await self.core.wait_settled()

    def not_ready_targets(self) -> list[str]:
        """What the sidecar still waits for before it is healthy (empty when healthy)."""
        targets = [] if self.ready else ["components"]
        if self.app_channel is not None and not self.app_channel.listening:
            targets.append("app")
        return targets

    def request_shutdown(self, force: bool = False) -> None:
        self.shutdown_handler(force)

    async def prepare(self) -> None:
        """Step 1: the core's specs and components, then invocation; raises ``SpecError`` on any problem."""
        await self.core.prepare()
        await governance.prepare(self)  # the HTTP pipeline's middlewares (a bad one fails start-up here)
        if self.observability is None:
            self.observability = Observability.configure(self.settings, self.core.configuration_spec)
            self.observability.attach(self.core, self.app_channel)
        if self.invocation is None:
            core = self.core
            invoker = Invoker(self.settings, core.invocation, self.app_channel, self.app_health)
            self._stack.push_async_callback(invoker.close)
            self.invocation = invoker

    async def start(self) -> None:
        """Step 2: connect the components in the background; then subscribe once the app listens."""
        await self.prepare()
        await self.core.start()
        if self._started:
            return
        self._started = True
        assert self.observability is not None
        await self.observability.start(self._stack, self.core)
        if self.app_health is not None:
            self.app_health.listeners.append(self._on_app_health)
            self.app_health.start()
            self._stack.push_async_callback(self.app_health.close)
        if self.app_channel is not None:
            for work in (self.app_channel.wait_until_listening(), self._subscribe(self.app_channel)):
                self._stack.push_async_callback(_cancel, asyncio.create_task(work))

    async def _subscribe(self, channel: AppChannel) -> None:
        await self.wait_ready()
        await channel.listening_event()
        if self.app_health is not None:
            await self.app_health.wait_healthy()
        programmatic = await self._programmatic_subscriptions(channel)
        try:
            await self.core.subscribe(HttpPostman(channel), programmatic)
        except Exception:
            log.exception("starting subscriptions failed")

    async def _on_app_health(self, healthy: bool) -> None:
        """The hook of app health checks: deliver nothing to an unhealthy app, resume once it recovers."""
        if healthy:
            await self.pubsub.resume_subscriptions()
        else:
            await self.pubsub.pause_subscriptions()

    async def _programmatic_subscriptions(self, channel: AppChannel) -> list[SubscriptionSpec]:
        """``GET /dapr/subscribe`` on the app, retried as Dapr's built-in initialisation policy does."""
        for delay in (0.5, 0.75, 1.125, None):
            try:
                response = await channel.request("GET", "/dapr/subscribe", headers={"content-type": "application/json"})
            except Exception as exc:
                log.warning("GET /dapr/subscribe failed: %s", str(exc) or type(exc).__name__)
            else:
                if response.status_code == 404:
                    return []
                if response.status_code == 200:
                    try:
                        return from_programmatic(orjson.loads(response.content) if response.content.strip() else [])
                    except (orjson.JSONDecodeError, SpecError) as exc:
                        log.error("the app's /dapr/subscribe answer is invalid: %s", exc)
                        return []
                log.error("GET /dapr/subscribe answered %d; no programmatic subscriptions", response.status_code)
                return []
            if delay is not None:
                await asyncio.sleep(delay)
        return []

    async def close(self) -> None:
        """Everything in reverse order: the app side, then the core (subscriptions, components), the channel."""
        await self._stack.aclose()
        self.invocation = None


def _app_channel(settings: Settings) -> AppChannel:
    """The channel into the app: HTTP, or Dapr's AppCallback service for ``--app-protocol grpc``."""
    address, port, token = settings.app_channel_address, settings.app_port or 0, settings.app_api_token
    if settings.app_protocol == "grpc":
        from app.grpc.app_channel import GrpcAppChannel  # grpcio is imported only for gRPC apps

        return GrpcAppChannel(address, port, token, settings.app_max_concurrency, settings.max_body_size)
    return AppChannel(address, port, token, settings.app_max_concurrency)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
