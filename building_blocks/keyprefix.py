"""Dapr's key prefixing, shared by the blocks whose keys live in a shared backend (state, lock)."""

from __future__ import annotations

from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import IllegalKey, SpecError

__all__ = ("SEPARATOR", "KeyPrefixer")

SEPARATOR = "||"


class KeyPrefixer:
    """``keyPrefix`` metadata: appid (default) | name | namespace | none | <literal> -> ``<prefix>||<key>``."""

    def __init__(self, strategy: str, component_name: str, context: ComponentContext, where: str = "") -> None:
        strategy = strategy or "appid"
        if SEPARATOR in strategy:
            raise SpecError(f"{where}: metadata 'keyPrefix' can't contain '||'")
        app_id, namespace = context.app_id, context.namespace
        match strategy.lower():
            case "appid":
                prefix = app_id
            case "name":
                prefix = component_name
            case "namespace":
                prefix = f"{namespace}.{app_id}" if namespace and app_id else app_id
            case "none":
                prefix = ""
            case _:
                prefix = strategy
        self.prefix = prefix + SEPARATOR if prefix else ""

    @classmethod
    def of(cls, name: str, metadata: Metadata, context: ComponentContext) -> KeyPrefixer:
        return cls(metadata.get("keyPrefix", ""), name, context, metadata.where)

    def key(self, component_name: str, key: str) -> str:
        """The stored key; ``IllegalKey`` when the user's key holds the separator."""
        if SEPARATOR in key:
            raise IllegalKey(component_name, key)
        return self.prefix + key

    def original(self, stored: str) -> str:
        return stored[len(self.prefix) :] if stored.startswith(self.prefix) else stored
