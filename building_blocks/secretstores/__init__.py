"""Secrets building block."""

from building_blocks.secretstores.base import Feature, SecretStore

__all__ = ("Feature", "SecretStore")
