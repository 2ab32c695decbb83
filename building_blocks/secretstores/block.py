"""The Secrets building block: secret stores by name, and Dapr's secrets API on them.

Configuration ``spec.secrets.scopes`` limit what the app may read (``scopes``, set by the runtime): a denied
secret is ``SecretDenied`` (403), and a bulk read leaves the denied ones out, as in Dapr. The runtime's own
reads (``secretKeyRef`` in component specs) are not the app's and pass ``scoped=False``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from building_blocks.block import Block
from building_blocks.component import ComponentContext
from building_blocks.configuration_spec import SecretsScopeSpec
from building_blocks.empty import NO_METADATA
from building_blocks.errors import Operation, SecretDenied
from building_blocks.secretstores.base import SecretStore

__all__ = ("SecretBlock", "SecretScope", "secret_scopes")


@dataclass(frozen=True, slots=True)
class SecretScope:
    """One store's scope: a non-empty ``allowed`` list decides alone; else ``denied`` names, else the default."""

    default_allow: bool = True
    allowed: frozenset[str] = frozenset()
    denied: frozenset[str] = frozenset()

    def allows(self, key: str) -> bool:
        if self.allowed:
            return key in self.allowed
        return key not in self.denied and self.default_allow


class SecretBlock(Block[SecretStore, None]):
    """All loaded secret stores."""

    kind = "secret store"
    type_prefix = "secretstores"
    component_base = SecretStore

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        #: Scopes by store name; a store without one allows every secret.
        self.scopes: dict[str, SecretScope] = {}

    def set_scopes(self, scopes: Iterable[tuple[str, SecretScope]]) -> None:
        self.scopes = dict(scopes)

    async def get(
        self, store_name: str, name: str, metadata: Mapping[str, str] = NO_METADATA, *, scoped: bool = True
    ) -> dict[str, str]:
        store = self.component(store_name)
        if scoped and (scope := self.scopes.get(store_name)) is not None and not scope.allows(name):
            raise SecretDenied(store_name, name)
        return await self.operation(Operation.SECRET_GET, store_name, name, store.get_secret, name, metadata)

    async def bulk_get(self, store_name: str, metadata: Mapping[str, str] = NO_METADATA) -> dict[str, dict[str, str]]:
        store = self.component(store_name)
        secrets = await self.operation(Operation.SECRET_BULK_GET, store_name, "", store.bulk_get_secret, metadata)
        scope = self.scopes.get(store_name)
        if scope is None:
            return secrets
        return {key: value for key, value in secrets.items() if scope.allows(key)}


def secret_scopes(specs: Iterable[SecretsScopeSpec]) -> list[tuple[str, SecretScope]]:
    """The Configuration's ``spec.secrets.scopes`` by store (``defaultAccess`` empty means allow)."""
    return [
        (
            spec.store_name,
            SecretScope(spec.default_access != "deny", frozenset(spec.allowed_secrets), frozenset(spec.denied_secrets)),
        )
        for spec in specs
    ]
