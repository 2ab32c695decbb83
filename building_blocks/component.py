"""What every component shares: its identity, its metadata and its lifecycle.

A component is built from a loaded spec (``ComponentSpec``) by its class's constructor, which only
reads and checks metadata (raising ``SpecError`` on bad values, so start-up fails before any I/O).
``init()`` then connects; ``close()`` releases everything; ``ping()`` checks the backend is reachable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from building_blocks.errors import SpecError

__all__ = ("Component", "ComponentContext", "Metadata", "parse_duration")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (``1h30m``, ``500ms``) or a bare number of seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


@dataclass(frozen=True, slots=True)
class ComponentContext:
    """What a component may know of the sidecar that loads it."""

    app_id: str = ""
    namespace: str = ""


class Metadata(Mapping[str, str]):
    """A component's ``spec.metadata`` with names matched case-insensitively, as Dapr does.

    Typed getters raise ``SpecError`` naming the component and the field, so a bad value stops start-up.
    """

    def __init__(self, items: Mapping[str, str], where: str = "") -> None:
        self._items = {name.lower(): (name, value) for name, value in items.items()}
        self.where = where

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def _fail(self, name: str, problem: str) -> SpecError:
        return SpecError(f"{self.where}: metadata '{name}' {problem}")

    def text(self, name: str, default: str = "", *, required: bool = False) -> str:
        value = self.get(name, "")
        if value == "":
            if required:
                raise self._fail(name, "is required")
            return default
        return value

    def integer(self, name: str, default: int) -> int:
        value = self.get(name, "").strip()
        if value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise self._fail(name, f"must be an integer, got {value!r}") from None

    def boolean(self, name: str, default: bool) -> bool:
        value = self.get(name, "").strip().lower()
        if value == "":
            return default
        if value in ("true", "1", "yes", "on", "y", "t"):
            return True
        if value in ("false", "0", "no", "off", "n", "f"):
            return False
        raise self._fail(name, f"must be a boolean, got {value!r}")

    def duration(self, name: str, default: float) -> float:
        """Seconds; accepts Go durations (``5s``, ``1m30s``) and bare numbers of seconds."""
        value = self.get(name, "").strip()
        if value == "":
            return default
        try:
            return parse_duration(value)
        except ValueError:
            raise self._fail(name, f"must be a duration like '5s', got {value!r}") from None


class Component:
    """Base of every component: name, metadata, context, and an async context-manager lifecycle.

    Subclasses read their metadata in ``__init__`` (after calling ``super().__init__``), through their typed
    declaration (``building_blocks._common.metadata.parse``, which also warns about names nobody reads), and
    fail with ``SpecError`` there, before any I/O; they connect in ``init()``.
    """

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        self.name = name
        self.metadata = metadata
        self.context = context or ComponentContext()

    async def init(self) -> None:
        """Connect to the backend and create what it needs (tables, scripts...)."""

    async def close(self) -> None:
        """Release connections and background tasks. Safe to call twice."""

    async def ping(self) -> None:
        """Raise ``ComponentError`` if the backend is not reachable."""

    async def __aenter__(self) -> Self:
        await self.init()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
