"""``secretstores.local.env``: the sidecar's environment variables as secrets (for local development).

Metadata: ``prefix`` (optional): only variables starting with it (case-insensitively) are secrets, and
their names are given without it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from building_blocks._common.metadata import SECRETSTORES, parse, text
from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import NotFoundInStore
from building_blocks.secretstores.base import SecretStore

__all__ = ("LocalEnvSecretStore",)


@dataclass(frozen=True, slots=True)
class LocalEnvSecretStoreMetadata:
    prefix: str = text("prefix")  # only variables starting with it (case-insensitively), without it


class LocalEnvSecretStore(SecretStore):
    """Reads the environment at each request, so changes made by the process are seen."""

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        self._prefix = parse(LocalEnvSecretStoreMetadata, metadata, SECRETSTORES).prefix.upper()

    def _secrets(self) -> dict[str, str]:
        size = len(self._prefix)
        return {name[size:]: value for name, value in os.environ.items() if name.upper().startswith(self._prefix)}

    async def get_secret(self, name: str, metadata: Mapping[str, str]) -> dict[str, str]:
        value = os.environ.get(self._prefix + name) if self._prefix else os.environ.get(name)
        if value is None:
            matches = [v for k, v in self._secrets().items() if k.upper() == name.upper()]
            if not matches:
                raise NotFoundInStore(f"secret {name} not found")
            value = matches[0]
        return {name: value}

    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        return {name: {name: value} for name, value in self._secrets().items()}
