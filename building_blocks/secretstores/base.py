"""The Secrets block's contract.

A secret is a map of string keys to string values: single-valued stores answer ``{name: value}``.
Missing secrets raise ``NotFoundInStore``; backend failures ``ComponentError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from building_blocks.component import Component

__all__ = ("Feature", "SecretStore")


class Feature(StrEnum):
    MULTIPLE_KEY_VALUES_PER_SECRET = "MULTIPLE_KEY_VALUES_PER_SECRET"


class SecretStore(Component):
    """Base class of secret stores."""

    features: frozenset[Feature] = frozenset()

    async def get_secret(self, name: str, metadata: Mapping[str, str]) -> dict[str, str]:
        raise NotImplementedError

    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        raise NotImplementedError
