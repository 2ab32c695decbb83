"""Choosing the name resolver: ``spec.nameResolution`` of a ``kind: Configuration`` resource, as in Dapr.

    apiVersion: dapr.io/v1alpha1
    kind: Configuration
    metadata: {name: config}
    spec:
      nameResolution:
        component: sqlite            # sqlite (default) | dns | kubernetes | static
        version: v1
        configuration: {connectionString: /tmp/nr.db}

Without one, the embedded default is ``nameresolution.sqlite`` on ``~/.layotto/data/nameresolution.db``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import SpecError
from building_blocks.nameresolution.base import NameResolver
from building_blocks.registry import resolve

__all__ = ("DEFAULT_COMPONENT", "load_resolver")

DEFAULT_COMPONENT = "sqlite"


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _spec(documents: Iterable[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]] | None:
    found: tuple[str, dict[str, Any]] | None = None
    for source, document in documents:
        spec = document.get("spec") or {}
        raw = spec.get("nameResolution") if isinstance(spec, dict) else None
        if raw is None:
            continue
        name = (document.get("metadata") or {}).get("name", "?")
        where = f"{source}: configuration '{name}'"
        if not isinstance(raw, dict):
            raise SpecError(f"{where}: spec.nameResolution must be a mapping")
        if found is not None:
            raise SpecError(f"{where}: spec.nameResolution is already set in {found[0]}")
        found = (where, raw)
    return found


def load_resolver(documents: Iterable[tuple[str, dict[str, Any]]], context: ComponentContext) -> NameResolver:
    """The resolver the ``Configuration`` documents ask for (constructed, not initialised)."""
    found = _spec(documents)
    where, raw = found if found is not None else ("the embedded default", {})
    component = _text(raw.get("component")).strip().lower() or DEFAULT_COMPONENT
    configuration = raw.get("configuration") or {}
    if not isinstance(configuration, dict):
        raise SpecError(f"{where}: spec.nameResolution.configuration must be a mapping")
    type_name = f"nameresolution.{component}"
    try:
        cls = resolve(type_name, _text(raw.get("version")) or "v1")
    except SpecError as exc:
        raise SpecError(f"{where}: nameResolution: {exc}") from None
    if not issubclass(cls, NameResolver):
        raise SpecError(f"{where}: '{type_name}' is not a name resolver")
    metadata = Metadata({str(k): _text(v) for k, v in configuration.items()}, f"{where}: nameResolution ({component})")
    return cls(component, metadata, context)
