"""The runtime: loads the resources, builds every component, owns their lifecycle and the blocks.

Start-up has two steps:
1. ``prepare()`` reads the resource files, initialises the secret stores (other components' metadata may
   reference them), resolves metadata and constructs every component. Any problem is a ``SpecError``
   naming the file, the component and the problem; nothing is served.
2. ``start()`` connects every other component concurrently, in the background, while the HTTP server
   already answers ``/v1.0/healthz`` with 500. Once all are up, the blocks are filled and the runtime is
   ready; if one fails (and is not ``ignoreErrors``), ``failure`` says why and the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from app.app_channel import AppChannel
from app.app_health import AppHealth
from app.configuration_delivery import app_delivery
from app.invocation.invoker import Invoker
from app.postman import HttpPostman
from app.settings import Settings
from building_blocks.block import Block
from building_blocks.component import Component, ComponentContext, Metadata
from building_blocks.configuration.block import ConfigurationBlock
from building_blocks.errors import LayottoError, SpecError
from building_blocks.invocation.endpoints import load_endpoints, resolve_endpoint
from building_blocks.lock.block import LockBlock
from building_blocks.nameresolution.loader import load_resolver
from building_blocks.pubsub.block import PubSubBlock
from building_blocks.pubsub.subscriptions import SubscriptionSpec, from_declarations, from_programmatic
from building_blocks.registry import block_of, resolve
from building_blocks.resiliency import Resiliency
from building_blocks.secretstores.block import SecretBlock
from building_blocks.sequencer.block import SequencerBlock
from building_blocks.specs import ComponentSpec, Resources, load_resources, resolve_metadata
from building_blocks.state.base import Feature as StateFeature
from building_blocks.state.base import StateStore
from building_blocks.state.block import StateBlock

__all__ = ("LoadedComponent", "Runtime")

log = logging.getLogger("layotto.runtime")


@dataclass(slots=True)
class LoadedComponent:
    spec: ComponentSpec
    component: Component
    ready: bool = False

    @property
    def capabilities(self) -> list[str]:
        features = sorted(str(f) for f in getattr(self.component, "features", ()))
        if isinstance(self.component, StateStore) and {StateFeature.ETAG, StateFeature.TRANSACTIONAL} <= set(
            self.component.features
        ):
            features.append("ACTOR")
        return features


class Runtime:
    """Every loaded component and the building blocks that serve them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        context = ComponentContext(app_id=settings.app_id, namespace=settings.namespace)
        self.context = context
        self.state = StateBlock(context)
        self.secrets = SecretBlock(context)
        self.pubsub = PubSubBlock(context)
        self.lock = LockBlock(context)
        self.sequencer = SequencerBlock(context)
        self.configuration = ConfigurationBlock(context)
        #: Every block by the block part of Dapr type strings; a new block adds one entry here.
        self.blocks: dict[str, Block[Any, Any]] = {
            block.type_prefix: block
            for block in (self.state, self.secrets, self.pubsub, self.lock, self.sequencer, self.configuration)
        }
        self.resiliency = Resiliency()
        self.declared_subscriptions: list[SubscriptionSpec] = []
        self.components: list[LoadedComponent] = []
        self.extended: dict[str, str] = {}
        self.failure = ""
        self.started_at = time.monotonic()
        self.ready_at: float | None = None
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()
        self._prepared = False
        self._task: asyncio.Task[None] | None = None
        self.on_failure: Callable[[str], None] = lambda reason: None
        #: Called by ``POST /v1.0/shutdown`` (``force`` = skip the graceful drain); set by the server.
        self.shutdown_handler: Callable[[bool], None] = lambda force: log.warning("shutdown requested, no server")
        self.app_channel = (
            AppChannel(settings.app_channel_address, settings.app_port, settings.app_api_token)
            if settings.app_port
            else None
        )
        #: Configuration subscriptions deliver to the app; without an app channel, subscribing fails.
        self.configuration.delivery = app_delivery(self.app_channel) if self.app_channel is not None else None
        self._app_task: asyncio.Task[None] | None = None
        self._subscribe_task: asyncio.Task[None] | None = None
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
        #: Service invocation, built (and registered with the name resolver) at the end of ``prepare()``.
        self.invocation: Invoker | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def wait_settled(self) -> None:
        """Until start-up has either succeeded or failed."""
        await self._settled.wait()

    def not_ready_targets(self) -> list[str]:
        """What the sidecar still waits for before it is healthy (empty when healthy)."""
        targets = [] if self.ready else ["components"]
        if self.app_channel is not None and not self.app_channel.listening:
            targets.append("app")
        return targets

    def request_shutdown(self, force: bool = False) -> None:
        self.shutdown_handler(force)

    def _construct(self, spec: ComponentSpec, values: dict[str, str]) -> Component:
        """Build the component and register it with its block (which checks block-level metadata)."""
        try:
            cls = resolve(spec.type, spec.version)
        except SpecError as exc:
            raise SpecError(f"{spec.where}: {exc}") from None
        block = self.blocks.get(block_of(spec.type))
        if block is None or not issubclass(cls, block.component_base):
            raise SpecError(f"{spec.where}: no building block serves type '{spec.type}'")
        component = cls(spec.name, Metadata(values, spec.where), self.context)
        block.add(component, spec.where)
        return component

    async def _secret(self, store: str, name: str, key: str) -> str:
        try:
            secret = await self.secrets.get(store, name)
        except LayottoError as exc:
            raise SpecError(f"secretKeyRef {name}/{key} in secret store {store}: {exc}") from None
        if key not in secret:
            raise SpecError(f"secretKeyRef: secret {name} in secret store {store} has no key '{key}'")
        return secret[key]

    async def prepare(self) -> None:
        """Step 1: load and construct everything; raises ``SpecError`` (one line) on any problem."""
        if self._prepared:
            return
        settings = self.settings
        resources = load_resources(settings.resources_paths, settings.app_id)
        self.resiliency = Resiliency.load(resources.others.get("Resiliency", []), settings.app_id)
        self.declared_subscriptions = from_declarations(resources.others.get("Subscription", []), settings.app_id)
        specs = resources.components
        secret_specs = [s for s in specs if block_of(s.type) == "secretstores"]
        for spec in secret_specs:
            if any(item.secret_ref for item in spec.metadata):
                raise SpecError(f"{spec.where}: a secret store can't use secretKeyRef")
            store = self._construct(spec, await resolve_metadata(spec, settings.environ, self._secret))
            try:
                await asyncio.wait_for(store.init(), spec.init_timeout)
            except (LayottoError, TimeoutError) as exc:
                raise SpecError(f"{spec.where}: init failed: {exc or 'timed out'}") from None
            self.components.append(LoadedComponent(spec, store, ready=True))
        for spec in specs:
            if spec in secret_specs:
                continue
            try:
                values = await resolve_metadata(
                    spec, settings.environ, self._secret, settings.app_id, settings.namespace
                )
            except SpecError as exc:
                message = str(exc)
                raise SpecError(message if message.startswith(spec.source) else f"{spec.where}: {message}") from None
            self.components.append(LoadedComponent(spec, self._construct(spec, values)))
        self.invocation = await self._invoker(resources)
        self._prepared = True

    async def _invoker(self, resources: Resources) -> Invoker:
        """HTTPEndpoints (their secrets resolved), the name resolver (initialised: this sidecar registers)."""
        endpoints = {}
        for spec in load_endpoints(resources.others.get("HTTPEndpoint", []), self.settings.app_id):
            endpoints[spec.name] = await resolve_endpoint(spec, self._secret)
        resolver = load_resolver(resources.others.get("Configuration", []), self.context)
        invoker = Invoker(self.settings, resolver, self.resiliency, endpoints, self.app_channel, self.app_health)
        try:
            await invoker.start()
        except LayottoError as exc:
            await invoker.close()
            raise SpecError(f"{resolver.metadata.where}: init failed: {exc}") from None
        return invoker

    async def _init_one(self, loaded: LoadedComponent) -> None:
        spec = loaded.spec
        try:
            await asyncio.wait_for(loaded.component.init(), spec.init_timeout)
        except Exception as exc:
            problem = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)
            message = f"{spec.where}: init failed: {problem}"
            if spec.ignore_errors:
                log.warning("%s (ignored: ignoreErrors is set)", message)
                self.blocks[block_of(spec.type)].remove(spec.name)
                return
            raise SpecError(message) from exc
        loaded.ready = True

    async def _initialise(self) -> None:
        pending = [c for c in self.components if not c.ready]
        try:
            await asyncio.gather(*(self._init_one(c) for c in pending))
        except SpecError as exc:
            self.failure = str(exc)
            log.error("%s", exc)
            self._settled.set()
            self.on_failure(self.failure)
            return
        self.ready_at = time.monotonic()
        self._ready.set()
        self._settled.set()
        log.info(
            "runtime ready in %.0f ms: %s",
            (self.ready_at - self.started_at) * 1000,
            ", ".join(f"{c.spec.name} ({c.spec.type})" for c in self.components if c.ready) or "no components",
        )

    async def start(self) -> None:
        """Step 2: connect the components in the background; then subscribe once the app listens."""
        await self.prepare()
        self._task = asyncio.create_task(self._initialise())
        if self.app_health is not None:
            self.app_health.listeners.append(self._on_app_health)
            self.app_health.start()
        if self.app_channel is not None:
            self._app_task = asyncio.create_task(self.app_channel.wait_until_listening())
            self._subscribe_task = asyncio.create_task(self._subscribe(self.app_channel))

    async def _subscribe(self, channel: AppChannel) -> None:
        await self.wait_ready()
        await channel.listening_event()
        if self.app_health is not None:
            await self.app_health.wait_healthy()
        specs = [*self.declared_subscriptions, *await self._programmatic_subscriptions(channel)]
        try:
            await self.pubsub.subscribe_all(specs, HttpPostman(channel), self.resiliency)
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
        for task in (self._task, self._app_task, self._subscribe_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.pubsub.close_subscriptions()
        for loaded in reversed(self.components):
            try:
                await loaded.component.close()
            except Exception:
                log.exception("closing %s failed", loaded.spec.where)
        self.components.clear()
        if self.app_health is not None:
            await self.app_health.close()
        if self.invocation is not None:
            await self.invocation.close()
            self.invocation = None
        if self.app_channel is not None:
            await self.app_channel.close()
