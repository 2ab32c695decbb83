"""``secretstores.local.file``: secrets read from a JSON file (for local development).

Features: MULTIPLE_KEY_VALUES_PER_SECRET when ``multiValued`` is true.
Metadata: ``secretsFile`` (required; relative paths are taken from the working directory),
``nestedSeparator`` (``:``), ``multiValued`` (false).

Nested objects are flattened with the separator: ``{"db": {"password": "x"}}`` is the secret
``db:password`` -> ``{"db:password": "x"}``; with ``multiValued`` it is the secret ``db`` ->
``{"password": "x"}`` (deeper levels flattened into its keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from building_blocks._common.metadata import SECRETSTORES, boolean, parse, text
from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError, NotFoundInStore
from building_blocks.secretstores.base import Feature, SecretStore

__all__ = ("LocalFileSecretStore",)


def _flatten(value: Any, separator: str, prefix: str = "") -> dict[str, str]:
    if not isinstance(value, dict):
        return {prefix: value if isinstance(value, str) else orjson.dumps(value).decode()}
    flat: dict[str, str] = {}
    for key, item in value.items():
        flat.update(_flatten(item, separator, f"{prefix}{separator}{key}" if prefix else str(key)))
    return flat


@dataclass(frozen=True, slots=True)
class LocalFileSecretStoreMetadata:
    secrets_file: str = text("secretsFile", required=True)
    nested_separator: str = text("nestedSeparator", ":")
    multi_valued: bool = boolean("multiValued", False)


class LocalFileSecretStore(SecretStore):
    """Loads the file once at start-up."""

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(LocalFileSecretStoreMetadata, metadata, SECRETSTORES)
        self._path = Path(settings.secrets_file).expanduser()
        self._separator = settings.nested_separator
        self._multi_valued = settings.multi_valued
        self.features = frozenset({Feature.MULTIPLE_KEY_VALUES_PER_SECRET}) if self._multi_valued else frozenset()
        self._secrets: dict[str, dict[str, str]] = {}

    async def init(self) -> None:
        try:
            document = orjson.loads(self._path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ComponentError(f"cannot read secrets file {self._path}: {exc}") from exc
        if not isinstance(document, dict):
            raise ComponentError(f"secrets file {self._path} must hold a JSON object")
        if self._multi_valued:
            self._secrets = {
                str(name): _flatten(value, self._separator) if isinstance(value, dict) else {name: str(value)}
                for name, value in document.items()
            }
        else:
            self._secrets = {name: {name: value} for name, value in _flatten(document, self._separator).items()}

    async def get_secret(self, name: str, metadata: Mapping[str, str]) -> dict[str, str]:
        secret = self._secrets.get(name)
        if secret is None:
            raise NotFoundInStore(f"secret {name} not found")
        return dict(secret)

    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        return {name: dict(secret) for name, secret in self._secrets.items()}
