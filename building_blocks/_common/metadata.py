"""Typed component metadata: each component declares its ``spec.metadata`` once, one function parses it.

A declaration is a frozen dataclass whose fields are made by ``text``, ``integer``, ``boolean`` and
``duration`` (each carrying the Dapr name, Dapr's default and the older names Dapr still accepts), or are a
``group``: a set of settings several components share (Redis's connection, PostgreSQL's, SQLite's).
``parse`` reads the fields (names match case-insensitively, as in Dapr), fails with the ``SpecError`` of
``Metadata``'s getters (file, component and field), and logs one warning per metadata name nobody reads, so a
misspelt ``tableNmae`` no longer falls back to the default unnoticed.

Plain dataclasses rather than pydantic: a declaration is a dozen fields of four kinds, and importing pydantic
costs more start-up time and idle memory than this module does in all.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from building_blocks.component import Metadata
from building_blocks.errors import SpecError

__all__ = (
    "CONFIGURATION",
    "LOCK",
    "NAMERESOLUTION",
    "PUBSUB",
    "SECRETSTORES",
    "SEQUENCER",
    "STATE",
    "NoMetadata",
    "boolean",
    "duration",
    "group",
    "integer",
    "known_names",
    "parse",
    "read",
    "text",
)

_log = logging.getLogger(__name__)
_KEY = "layotto.metadata"
T = TypeVar("T")

# Names the block (not the component) reads, per block; a name ending in "." is a prefix.
STATE = ("keyPrefix", "actorStateStore")  # actorStateStore: read by Dapr's runtime, accepted for compatibility
LOCK = ("keyPrefix",)
SEQUENCER = ("keyPrefix", "segmentSize", "segmentStep", "segmentCacheEnable", "biggerThan.")
PUBSUB = ("consumerID", "allowedTopics", "protectedTopics", "publishingScopes", "subscriptionScopes")
CONFIGURATION: tuple[str, ...] = ()
SECRETSTORES: tuple[str, ...] = ()
NAMERESOLUTION: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    aliases: tuple[str, ...]
    read: Callable[[Metadata, str], Any]  # the value of a given (non-blank) name
    default: Any
    required: bool = False
    blank: Callable[[str], bool] = lambda value: not value.strip()

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True, slots=True)
class _Group:
    declaration: type[Any]


def _field(spec: _Field | _Group) -> Any:
    return dataclasses.field(metadata={_KEY: spec})


def text(name: str, default: str = "", *aliases: str, required: bool = False) -> Any:
    """A string; blank means not given (``SpecError`` when ``required``)."""
    return _field(_Field(name, aliases, lambda meta, n: meta[n], default, required, lambda value: value == ""))


def integer(name: str, default: int | None, *aliases: str) -> Any:
    return _field(_Field(name, aliases, lambda meta, n: meta.integer(n, 0), default))


def boolean(name: str, default: bool, *aliases: str) -> Any:
    return _field(_Field(name, aliases, lambda meta, n: meta.boolean(n, False), default))


def duration(name: str, default: float | None, *aliases: str) -> Any:
    """Seconds: a Go duration (``5s``, ``1m30s``) or a bare number; ``None`` as default means not given."""
    return _field(_Field(name, aliases, lambda meta, n: meta.duration(n, 0.0), default))


def group(declaration: type[Any]) -> Mapping[str, Any]:
    """The ``metadata`` of a field holding a shared declaration read from the same metadata (its names are
    the component's names): ``connection: RedisSettings = field(metadata=group(RedisSettings))``."""
    return {_KEY: _Group(declaration)}


@dataclass(frozen=True, slots=True)
class NoMetadata:
    """The declaration of a component without metadata of its own."""


def _values(declaration: type[Any], meta: Metadata) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(declaration):
        spec = f.metadata[_KEY]
        if isinstance(spec, _Group):
            values[f.name] = spec.declaration(**_values(spec.declaration, meta))
            continue
        given = next((n for n in spec.names() if not spec.blank(meta.get(n, ""))), None)
        if given is not None:
            values[f.name] = spec.read(meta, given)
        elif spec.required:
            raise SpecError(f"{meta.where}: metadata '{spec.name}' is required")
        else:
            values[f.name] = spec.default
    return values


def known_names(declaration: type[Any]) -> tuple[str, ...]:
    """Every name (and alias) ``declaration`` reads, as Dapr spells it."""
    names: list[str] = []
    for f in dataclasses.fields(declaration):
        spec = f.metadata[_KEY]
        names.extend(known_names(spec.declaration) if isinstance(spec, _Group) else spec.names())
    return tuple(names)


def read(declaration: type[T], meta: Metadata) -> T:
    """``declaration`` built from ``meta``, without judging the names it does not read (see ``parse``)."""
    return declaration(**_values(declaration, meta))


def parse(declaration: type[T], meta: Metadata, block_names: Iterable[str] = ()) -> T:
    """``declaration`` built from ``meta``; warns once per name neither it nor ``block_names`` reads."""
    built = read(declaration, meta)
    _warn_unknown(meta, (*known_names(declaration), *block_names))
    return built


def _warn_unknown(meta: Metadata, names: tuple[str, ...]) -> None:
    prefixes = tuple(n.lower() for n in names if n.endswith("."))
    spelled = {n.lower(): n for n in names if not n.endswith(".")}
    for name in meta:
        lowered = name.lower()
        if lowered in spelled or lowered.startswith(prefixes):
            continue
        import difflib  # only for a did-you-mean: a plain start-up does not load it

        close = difflib.get_close_matches(lowered, spelled, n=1, cutoff=0.75)
        hint = f"; did you mean '{spelled[close[0]]}'?" if close else ""
        _log.warning("%s: unknown metadata '%s' is ignored%s", meta.where, name, hint)
