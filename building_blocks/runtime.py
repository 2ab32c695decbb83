"""The composition root: specs → components → blocks, on one ``AsyncExitStack``. No HTTP, no gRPC in it.

A front (the HTTP server today, gRPC tomorrow) builds a ``Runtime`` from plain values (``RuntimeConfig``),
enters it, and adds what reaches the app (app channel, postman, relay). Start-up has two steps:
1. ``prepare()`` reads the resource files, initialises the secret stores (other components' metadata may
   reference them), resolves metadata, constructs every component and registers this sidecar with the name
   resolver. Any problem is a ``SpecError`` naming the file, the component and the problem.
2. ``start()`` connects every other component concurrently, in the background, so the front can already
   answer that it is not ready. Once all are up the runtime is ready; if one fails (and is not
   ``ignoreErrors``), ``failure`` says why and ``on_failure`` is called.
Everything acquired is registered on the stack as it is acquired, so ``close()`` releases exactly that, in
reverse order, whether start-up got to the end or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from building_blocks.block import Block, Layer
from building_blocks.component import Component, ComponentContext, Metadata
from building_blocks.configuration.block import ConfigurationBlock
from building_blocks.configuration_spec import ConfigurationSpec, load_configuration
from building_blocks.errors import LayottoError, SpecError
from building_blocks.invocation.block import InvocationBlock
from building_blocks.invocation.endpoints import HttpEndpoint, load_endpoints, resolve_endpoint
from building_blocks.lock.block import LockBlock
from building_blocks.nameresolution.base import Instance, NameResolver
from building_blocks.nameresolution.loader import load_resolver
from building_blocks.pubsub.block import PubSubBlock
from building_blocks.pubsub.subscriber import Postman
from building_blocks.pubsub.subscriptions import SubscriptionSpec, from_declarations
from building_blocks.registry import block_of, resolve
from building_blocks.resiliency import Resiliency
from building_blocks.resiliency_layer import install as install_resiliency
from building_blocks.secretstores.block import SecretBlock, secret_scopes
from building_blocks.sequencer.block import SequencerBlock
from building_blocks.specs import ComponentSpec, Resources, load_resources, resolve_metadata
from building_blocks.state.base import Feature as StateFeature
from building_blocks.state.base import StateStore
from building_blocks.state.block import StateBlock

__all__ = ("LoadedComponent", "Runtime", "RuntimeConfig")

log = logging.getLogger("layotto.runtime")


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """What the domain needs from the sidecar's settings, as plain values (the front reads flags and env)."""

    app_id: str
    resources_paths: Sequence[Path]
    namespace: str = ""
    #: For ``envRef`` / ``{env}`` metadata values.
    environ: Mapping[str, str] = field(default_factory=dict)
    #: Where other sidecars reach this one, registered with the name resolver (port 0: serves no app).
    advertised_host: str = "127.0.0.1"
    internal_port: int = 0
    #: The port other sidecars' internal listeners are assumed on when a resolver knows only host names (DNS):
    #: this sidecar's own internal port, even when it serves no app; None = ``internal_port``.
    peer_port: int | None = None
    #: Dapr's ``--config``: a ``kind: Configuration`` file, read by ``prepare()`` (None: the defaults).
    configuration_file: Path | None = None


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
    """Every loaded component and the building blocks that serve them; an async context manager."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        context = ComponentContext(app_id=config.app_id, namespace=config.namespace)
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
        #: The ``--config`` file (tracing, metrics, logging, pipelines, access control...), read by ``prepare()``.
        self.configuration_spec = ConfigurationSpec()
        self.declared_subscriptions: list[SubscriptionSpec] = []
        #: ``middleware.http.*`` components by name, their metadata resolved: the HTTP front builds them.
        self.middleware: dict[str, tuple[ComponentSpec, dict[str, str]]] = {}
        self.components: list[LoadedComponent] = []
        #: HTTPEndpoint resources by name, their secrets resolved (invocation targets outside the mesh).
        self.endpoints: dict[str, HttpEndpoint] = {}
        self.failure = ""
        self.started_at = time.monotonic()
        self.ready_at: float | None = None
        self.on_failure: Callable[[str], None] = lambda reason: None
        #: Service invocation; its component is the name resolver, its transport comes from the front.
        self.invocation: InvocationBlock[Any] = InvocationBlock(context)
        self._resolver: NameResolver | None = None
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()
        self._prepared = False
        self._task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._stack.callback(self.components.clear)  # last: what was loaded is no longer listed once closed

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def resolver(self) -> NameResolver:
        """The name resolver, initialised (this sidecar registered) by ``prepare()``."""
        if self._resolver is None:
            raise RuntimeError("the runtime is not prepared")
        return self._resolver

    def add_layer(self, layer: Layer) -> None:
        """Apply ``layer`` (resiliency, metrics, tracing) around every component call of every block."""
        for block in self.blocks.values():
            block.add_layer(layer)

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def wait_settled(self) -> None:
        """Until start-up has either succeeded or failed."""
        await self._settled.wait()

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

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

    def _keep(self, loaded: LoadedComponent) -> None:
        """List the component and register its close."""
        self.components.append(loaded)
        self._stack.push_async_callback(_close_component, loaded)

    async def _secret(self, store: str, name: str, key: str) -> str:
        try:
            secret = await self.secrets.get(store, name, scoped=False)  # the runtime's read, not the app's
        except LayottoError as exc:
            raise SpecError(f"secretKeyRef {name}/{key} in secret store {store}: {exc}") from None
        if key not in secret:
            raise SpecError(f"secretKeyRef: secret {name} in secret store {store} has no key '{key}'")
        return secret[key]

    async def prepare(self) -> None:
        """Step 1: load and construct everything; raises ``SpecError`` (one line) on any problem."""
        if self._prepared:
            return
        config = self.config
        if config.configuration_file is not None:
            self.configuration_spec = load_configuration(config.configuration_file)
        self.secrets.set_scopes(secret_scopes(self.configuration_spec.secret_scopes))
        resources = load_resources(config.resources_paths, config.app_id)
        self.resiliency = Resiliency.load(resources.others.get("Resiliency", []), config.app_id)
        self.declared_subscriptions = from_declarations(resources.others.get("Subscription", []), config.app_id)
        specs = resources.components
        secret_specs = [s for s in specs if block_of(s.type) == "secretstores"]
        for spec in secret_specs:
            if any(item.secret_ref for item in spec.metadata):
                raise SpecError(f"{spec.where}: a secret store can't use secretKeyRef")
            store = self._construct(spec, await resolve_metadata(spec, config.environ, self._secret))
            try:
                await asyncio.wait_for(store.init(), spec.init_timeout)
            except (LayottoError, TimeoutError) as exc:
                raise SpecError(f"{spec.where}: init failed: {exc or 'timed out'}") from None
            self._keep(LoadedComponent(spec, store, ready=True))
        for spec in specs:
            if spec in secret_specs:
                continue
            try:
                values = await resolve_metadata(spec, config.environ, self._secret, config.app_id, config.namespace)
            except SpecError as exc:
                message = str(exc)
                raise SpecError(message if message.startswith(spec.source) else f"{spec.where}: {message}") from None
            if block_of(spec.type) == "middleware":  # HTTP middleware: a front builds it (app.governance)
                self.middleware[spec.name] = (spec, values)
                continue
            self._keep(LoadedComponent(spec, self._construct(spec, values)))
        # after secretKeyRef resolution (start-up reads, not the app's calls): only the app's calls get policies
        install_resiliency(self.resiliency, self.blocks.values())
        await self._name_resolution(resources)
        self._stack.push_async_callback(self.pubsub.close_subscriptions)
        self._prepared = True

    async def _name_resolution(self, resources: Resources) -> None:
        """HTTPEndpoints (their secrets resolved), the name resolver (initialised: this sidecar registers)."""
        config = self.config
        for spec in load_endpoints(resources.others.get("HTTPEndpoint", []), config.app_id):
            self.endpoints[spec.name] = await resolve_endpoint(spec, self._secret)
        resolver = load_resolver(self._resolver_documents(resources), self.context)
        instance = Instance(config.app_id, config.namespace, config.advertised_host, config.internal_port)
        resolver.bind(instance)
        self._stack.push_async_callback(resolver.close)
        try:
            await resolver.init()
        except LayottoError as exc:
            raise SpecError(f"{resolver.metadata.where}: init failed: {exc}") from None
        self._resolver = resolver
        peer_port = config.internal_port if config.peer_port is None else config.peer_port
        self.invocation.configure(resolver, self.resiliency, self.endpoints, instance, peer_port)

    def _resolver_documents(self, resources: Resources) -> list[tuple[str, dict[str, Any]]]:
        """Where ``nameResolution`` comes from: the ``--config`` file when it sets one, else the resources."""
        spec = self.configuration_spec
        found = spec.name_resolution
        if found is None:
            return resources.others.get("Configuration", [])
        raw = {"component": found.component, "version": found.version, "configuration": dict(found.configuration)}
        return [(spec.source, {"metadata": {"name": spec.name}, "spec": {"nameResolution": raw}})]

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
        """Step 2: connect the components in the background (``wait_settled`` says when that is over)."""
        await self.prepare()
        if self._task is None:
            self._task = asyncio.create_task(self._initialise())
            self._stack.push_async_callback(_cancel, self._task)

    async def subscribe(self, postman: Postman, programmatic: Iterable[SubscriptionSpec] = ()) -> None:
        """Start the declared subscriptions and the app's ``programmatic`` ones, delivering through ``postman``."""
        await self.pubsub.subscribe_all([*self.declared_subscriptions, *programmatic], postman, self.resiliency)

    async def close(self) -> None:
        """Release everything acquired, in reverse order; closing twice does nothing more."""
        await self._stack.aclose()


async def _close_component(loaded: LoadedComponent) -> None:
    try:
        await loaded.component.close()
    except Exception:
        log.exception("closing %s failed", loaded.spec.where)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
