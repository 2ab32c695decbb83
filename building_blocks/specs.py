"""Loading Dapr resource files (``kind: Component`` and friends) from the resources paths.

Every YAML/JSON file directly in a resources directory is read; a file may hold several documents.
Documents whose ``apiVersion`` is not ``dapr.io/...`` are skipped, as Dapr does. Anything malformed raises
``SpecError`` with one line naming the file, the resource and the problem.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from building_blocks._common.yamldocs import safe_load_all
from building_blocks.component import parse_duration
from building_blocks.errors import SpecError

__all__ = ("ComponentSpec", "MetadataItem", "Resources", "SecretRef", "load_resources", "resolve_metadata")

SecretLookup = Callable[[str, str, str], Awaitable[str]]  # (store, secret name, key) -> value


@dataclass(frozen=True, slots=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class MetadataItem:
    name: str
    value: str = ""
    secret_ref: SecretRef | None = None
    env_ref: str = ""


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    name: str
    type: str
    version: str
    metadata: tuple[MetadataItem, ...]
    source: str
    namespace: str = ""
    secret_store: str = ""
    scopes: tuple[str, ...] = ()
    init_timeout: float = 5.0
    ignore_errors: bool = False

    @property
    def where(self) -> str:
        return f"{self.source}: component '{self.name}' ({self.type})"

    def in_scope(self, app_id: str) -> bool:
        return not self.scopes or app_id in self.scopes


@dataclass(slots=True)
class Resources:
    """What the resources paths hold: components in scope, and the other kinds for the blocks using them."""

    components: list[ComponentSpec] = field(default_factory=list)
    others: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _documents(path: Path) -> Iterable[Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return safe_load_all(text)
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise SpecError(f"{path}: malformed YAML: {problem}") from None


def _metadata_item(raw: Any, where: str) -> MetadataItem:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise SpecError(f"{where}: every spec.metadata item needs a 'name'")
    name = raw["name"]
    ref = raw.get("secretKeyRef")
    if ref is not None:
        if not isinstance(ref, dict) or not ref.get("name"):
            raise SpecError(f"{where}: metadata '{name}' secretKeyRef needs a 'name'")
        return MetadataItem(name, secret_ref=SecretRef(str(ref["name"]), str(ref.get("key") or ref["name"])))
    if raw.get("envRef"):
        return MetadataItem(name, env_ref=str(raw["envRef"]))
    return MetadataItem(name, _scalar(raw.get("value")))


def _component(document: dict[str, Any], source: str) -> ComponentSpec:
    meta = document.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise SpecError(f"{source}: a Component has no metadata.name")
    spec = document.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str) or not spec["type"]:
        raise SpecError(f"{source}: component '{name}': spec.type is missing")
    where = f"{source}: component '{name}' ({spec['type']})"
    if "||" in name:
        raise SpecError(f"{where}: the name can't contain '||'")
    items = spec.get("metadata") or []
    if not isinstance(items, list):
        raise SpecError(f"{where}: spec.metadata must be a list")
    auth = document.get("auth") or {}
    auth = {str(k).lower(): v for k, v in auth.items()} if isinstance(auth, dict) else {}
    scopes = document.get("scopes") or []
    if not isinstance(scopes, list):
        raise SpecError(f"{where}: scopes must be a list of app ids")
    try:
        init_timeout = parse_duration(str(spec.get("initTimeout") or "5s"))
    except ValueError:
        raise SpecError(f"{where}: spec.initTimeout is not a duration") from None
    return ComponentSpec(
        name=name,
        type=spec["type"].strip().lower(),
        version=_scalar(spec.get("version")) or "v1",
        metadata=tuple(_metadata_item(item, where) for item in items),
        source=source,
        namespace=_scalar(meta.get("namespace")) if isinstance(meta, dict) else "",
        secret_store=_scalar(auth.get("secretstore")),
        scopes=tuple(_scalar(s) for s in scopes),
        init_timeout=init_timeout,
        ignore_errors=str(spec.get("ignoreErrors", "false")).lower() == "true",
    )


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise SpecError(f"{directory}: resources path is not a directory")
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))


def load_resources(directories: Iterable[Path], app_id: str) -> Resources:
    """Read every resource file; keep the components whose scopes admit ``app_id``."""
    resources = Resources()
    seen: dict[tuple[str, str], str] = {}
    for directory in directories:
        for path in _files(directory):
            for document in _documents(path):
                if document is None:
                    continue
                if not isinstance(document, dict):
                    raise SpecError(f"{path}: a resource document must be a mapping")
                if not str(document.get("apiVersion", "")).startswith("dapr.io/"):
                    continue
                kind = str(document.get("kind", ""))
                if kind != "Component":
                    resources.others.setdefault(kind, []).append((str(path), document))
                    continue
                spec = _component(document, str(path))
                if not spec.in_scope(app_id):
                    continue
                block = spec.type.split(".", 1)[0]
                previous = seen.get((block, spec.name))
                if previous is not None:
                    raise SpecError(f"{spec.where}: a {block} component of that name is already in {previous}")
                seen[(block, spec.name)] = spec.source
                resources.components.append(spec)
    return resources


def _template(value: str, app_id: str, namespace: str) -> str:
    if "{" not in value:
        return value
    return (
        value.replace("{uuid}", str(uuid.uuid4()))
        .replace("{appID}", app_id)
        .replace("{namespace}", f"{namespace}.{app_id}" if namespace else app_id)
    )


async def resolve_metadata(
    spec: ComponentSpec,
    environ: Mapping[str, str],
    secrets: SecretLookup,
    app_id: str = "",
    namespace: str = "",
) -> dict[str, str]:
    """The metadata values, with ``envRef``, ``secretKeyRef`` (through ``auth.secretStore``) and templates."""
    values: dict[str, str] = {}
    for item in spec.metadata:
        if item.secret_ref is not None:
            if not spec.secret_store:
                raise SpecError(
                    f"{spec.where}: metadata '{item.name}' uses secretKeyRef but auth.secretStore is not set"
                )
            value = await secrets(spec.secret_store, item.secret_ref.name, item.secret_ref.key)
        elif item.env_ref:
            if item.env_ref.upper() in ("APP_API_TOKEN", "DAPR_API_TOKEN"):
                raise SpecError(f"{spec.where}: metadata '{item.name}' may not read {item.env_ref}")
            value = environ.get(item.env_ref, "")
        else:
            value = _template(item.value, app_id, namespace)
        values[item.name] = value
    return values
