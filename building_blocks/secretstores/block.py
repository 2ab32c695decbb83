"""The Secrets building block: secret stores by name, and Dapr's secrets API on them."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from building_blocks.block import Block
from building_blocks.empty import NO_METADATA
from building_blocks.errors import LayottoError, Operation, OperationFailed
from building_blocks.secretstores.base import SecretStore

__all__ = ("SecretBlock",)

log = logging.getLogger(__name__)


class SecretBlock(Block[SecretStore]):
    """All loaded secret stores."""

    kind = "secret store"
    type_prefix = "secretstores"
    component_base = SecretStore

    async def get(self, store_name: str, name: str, metadata: Mapping[str, str] = NO_METADATA) -> dict[str, str]:
        store = self.component(store_name)
        try:
            return await store.get_secret(name, metadata)
        except Exception as exc:
            if not isinstance(exc, LayottoError):
                log.exception("secret store %s failed unexpectedly", store_name)
            raise OperationFailed(Operation.SECRET_GET, store_name, exc, name) from exc

    async def bulk_get(self, store_name: str, metadata: Mapping[str, str] = NO_METADATA) -> dict[str, dict[str, str]]:
        store = self.component(store_name)
        try:
            return await store.bulk_get_secret(metadata)
        except Exception as exc:
            if not isinstance(exc, LayottoError):
                log.exception("secret store %s failed unexpectedly", store_name)
            raise OperationFailed(Operation.SECRET_BULK_GET, store_name, exc) from exc
