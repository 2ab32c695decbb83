"""The Secrets building block: secret stores by name, and Dapr's secrets API on them."""

from __future__ import annotations

from collections.abc import Mapping

from building_blocks.block import Block
from building_blocks.empty import NO_METADATA
from building_blocks.errors import Operation
from building_blocks.secretstores.base import SecretStore

__all__ = ("SecretBlock",)


class SecretBlock(Block[SecretStore, None]):
    """All loaded secret stores."""

    kind = "secret store"
    type_prefix = "secretstores"
    component_base = SecretStore

    async def get(self, store_name: str, name: str, metadata: Mapping[str, str] = NO_METADATA) -> dict[str, str]:
        store = self.component(store_name)
        return await self.operation(Operation.SECRET_GET, store_name, name, store.get_secret, name, metadata)

    async def bulk_get(self, store_name: str, metadata: Mapping[str, str] = NO_METADATA) -> dict[str, dict[str, str]]:
        store = self.component(store_name)
        return await self.operation(Operation.SECRET_BULK_GET, store_name, "", store.bulk_get_secret, metadata)
