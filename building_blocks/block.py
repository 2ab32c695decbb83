"""What every building block shares: one entry per component, Dapr's lookup errors, and ``operation``, the one
wrapper around every component call, where resiliency policies, metrics and tracing apply as ``Layer``s."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from typing import Any, ClassVar, Generic, NoReturn, Protocol, TypeVar, TypeVarTuple, cast

from building_blocks.component import Component, ComponentContext
from building_blocks.errors import (
    CLIENT_MISTAKES,
    ComponentNotConfigured,
    ComponentNotFound,
    LayottoError,
    Operation,
    OperationFailed,
)
from building_blocks.keyprefix import KeyPrefixer

__all__ = ("Block", "ComponentCall", "Entry", "Layer", "LayerOrder", "Observer")

log = logging.getLogger(__name__)

C = TypeVar("C", bound=Component)
S = TypeVar("S")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: What ``operation`` lets through unwrapped: the caller's own mistakes, and failures that already say which
#: operation failed.
_PASS_THROUGH = (*CLIENT_MISTAKES, OperationFailed)
#: The prefixer of blocks whose keys are not prefixed (``Block.prefixes_keys`` is false).
_NO_PREFIX = KeyPrefixer("none", "", ComponentContext())


@dataclass(slots=True)
class ComponentCall:
    """What a layer is told about one component call: which block, component, operation and item.

    Made for every component call that has layers, so not frozen: a frozen dataclass's ``__init__`` sets each
    field through ``object.__setattr__`` (1.5 us per call here, 0.6 us for this one); layers only read it."""

    block: Block[Any, Any]
    operation: Operation
    store: str
    key: str


class Layer(Protocol):
    """Something applied around every component call of a block: a resiliency policy, metrics, tracing.

    ``proceed()`` runs the next layer (in the end, the component call itself); a layer may call it again
    (retries) or not at all (an open circuit breaker). It sees the component's raw exceptions; what the
    client is told is decided once, outside every layer, by ``Block.fail``. ``order`` places it: lower runs
    further out (see ``LayerOrder``)."""

    order: int

    def __call__(self, call: ComponentCall, proceed: Callable[[], Awaitable[T]]) -> Awaitable[T]: ...


class Observer(Protocol):
    """A layer that only watches calls (metrics): it can be told of a call made without it, once it is over,
    which is what lets a block make a call from the event loop's callbacks (``Block.observers``)."""

    def observed(self, call: ComponentCall, success: bool, seconds: float) -> None: ...


class LayerOrder:
    """Where each kind of layer sits, outermost first: a span covers the whole call, metrics time what the
    client waits for (retries included, as Dapr records component latency around its policy runner), and
    resiliency (retry around circuit breaker around timeout) is closest to the component."""

    TRACING = 10
    METRICS = 20
    RESILIENCY = 30


class Entry(Generic[C, S]):
    """One loaded component with what the block keeps for it: its key prefixer and the block's settings."""

    __slots__ = ("component", "prefixer", "settings")

    def __init__(self, component: C, prefixer: KeyPrefixer, settings: S) -> None:
        self.component = component
        self.prefixer = prefixer
        self.settings = settings


class _Components(Mapping[str, C]):
    """The components by name, read from the entries (so there is one dict to keep, not two)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Mapping[str, Entry[C, Any]]) -> None:
        self._entries = entries

    def __getitem__(self, name: str) -> C:
        return self._entries[name].component

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


class Block(Generic[C, S]):
    """The loaded components of one block. Subclasses add the block's API on top.

    ``kind`` names the components in errors ("state store"); ``component_base`` is the class every
    component of the block derives from; ``type_prefix`` is the block part of Dapr type strings;
    ``prefixes_keys`` says whether the block prefixes keys (``keyPrefix`` metadata); ``S`` is the type of the
    block's own settings per component (``None`` for blocks without any; see ``settings``).
    """

    kind: ClassVar[str]
    type_prefix: ClassVar[str]
    component_base: ClassVar[type[Component]]
    prefixes_keys: ClassVar[bool] = False

    def __init__(self, context: ComponentContext) -> None:
        self.context = context
        self.entries: dict[str, Entry[C, S]] = {}
        self.components: Mapping[str, C] = _Components(self.entries)
        #: Applied around every component call, outermost first; empty (the default) costs nothing.
        self.layers: tuple[Layer, ...] = ()
        #: What each layer is told of a call made without it, when every layer only watches (``Observer``);
        #: ``None`` when one does more (a resiliency policy, a span around the call): every call runs them.
        self.observers: tuple[Callable[[ComponentCall, bool, float], None], ...] | None = ()

    def add_layer(self, layer: Layer) -> None:
        """Apply ``layer`` around every later component call of this block, in ``layer.order``."""
        self.layers = tuple(sorted((*self.layers, layer), key=lambda known: known.order))
        observers = tuple(getattr(known, "observed", None) for known in self.layers)
        self.observers = None if None in observers else cast(Any, observers)

    def observe(self, call: ComponentCall, success: bool, started: float) -> None:
        """Tells the layers (all ``Observer``s) of ``call``, made without them since ``started``
        (``perf_counter``)."""
        if self.observers:
            seconds = perf_counter() - started
            for observed in self.observers:
                observed(call, success, seconds)

    def add(self, component: C, where: str) -> None:
        """Register a constructed (not yet initialised) component; raise ``SpecError`` for bad settings."""
        name = component.name
        prefixer = KeyPrefixer.of(name, component.metadata, self.context) if self.prefixes_keys else _NO_PREFIX
        self.entries[name] = Entry(component, prefixer, self.settings(component, prefixer))

    def settings(self, component: C, prefixer: KeyPrefixer) -> S:
        """The block's settings for ``component`` (from its metadata); ``SpecError`` when they are bad.

        Blocks with settings override this; for the others ``S`` is ``None``."""
        return cast(S, None)

    def remove(self, name: str) -> None:
        self.entries.pop(name, None)

    def entry(self, name: str) -> Entry[C, S]:
        found = self.entries.get(name)
        if found is None:
            if not self.entries:
                raise ComponentNotConfigured(self.kind, name)
            raise ComponentNotFound(self.kind, name)
        return found

    def component(self, name: str) -> C:
        return self.entry(name).component

    async def operation(
        self, operation: Operation, store: str, key: str, call: Callable[[*Ts], Awaitable[T]], *args: *Ts
    ) -> T:
        """``call(*args)`` on component ``store`` (for item ``key``), its failures reported per ``fail``.

        The call is a function and its arguments, not a closure or a coroutine: nothing is allocated beyond
        the call itself, and a policy can call it again (retries). With layers, they run around it."""
        try:
            if self.layers:
                return await self.layered(ComponentCall(self, operation, store, key), call, *args)
            return await call(*args)
        except Exception as exc:
            self.fail(operation, store, key, exc)

    def layered(self, described: ComponentCall, call: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> Awaitable[T]:
        """``call(*args)`` inside every layer (the caller applies ``fail`` to what comes out)."""
        proceed: Callable[[], Awaitable[T]] = partial(call, *args)
        for layer in reversed(self.layers):
            proceed = partial(layer, described, proceed)
        return proceed()

    def fail(self, operation: Operation, store: str, key: str, exc: Exception) -> NoReturn:
        """Raise what the client is told about ``exc``, raised by ``operation`` on ``store``: the one rule.

        * The caller's own mistakes (``CLIENT_MISTAKES``: the errors ``app/errors.py`` answers with a 4xx of
          their own) pass through unwrapped, and so does an ``OperationFailed`` (it already says what failed).
        * Every other failure becomes ``OperationFailed(operation, store, exc, key)``, reported with the
          operation's Dapr code; a client's mistake that Dapr reports that way is a ``ComponentError``
          (``InvalidOption``, ``ETagMismatch``, ``KeyRefused``...) and its status comes from the table.
        * A failure that is not a ``LayottoError`` is a bug of a component: logged once, with its traceback.

        ``operation`` applies it; so do the two hot paths that call their component inline (state get,
        publish: ``except Exception as exc: self.fail(...)``), since ``operation`` costs them a coroutine and a
        bound method per call (~0.1 µs); when the block has layers, those two go through ``operation``."""
        if isinstance(exc, _PASS_THROUGH):
            raise exc
        if not isinstance(exc, LayottoError):
            log.error("%s on %s %s failed unexpectedly", operation, self.kind, store, exc_info=exc)
        raise OperationFailed(operation, store, exc, key) from exc
