"""``kind: HTTPEndpoint`` resources: names for services outside the mesh (Dapr's format).

    apiVersion: dapr.io/v1alpha1
    kind: HTTPEndpoint
    metadata: {name: github}
    spec:
      baseUrl: https://api.github.com
      headers:
        - {name: Accept-Language, value: en-US}
        - {name: Authorization, secretKeyRef: {name: my-secret, key: token}}
    auth: {secretStore: localsecrets}
    scopes: [app1]

``/v1.0/invoke/github/method/users/x`` then calls ``https://api.github.com/users/x``, with the configured
headers replacing the caller's of the same name. ``clientTLS`` is not supported (start-up fails with a
message rather than calling without the configured certificates).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from building_blocks.errors import SpecError
from building_blocks.specs import MetadataItem, SecretLookup, SecretRef

__all__ = ("EndpointSpec", "HttpEndpoint", "load_endpoints", "resolve_endpoint")


@dataclass(frozen=True, slots=True)
class HttpEndpoint:
    name: str
    base_url: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """As read from the file: header values may still be secret references."""

    name: str
    base_url: str
    headers: tuple[MetadataItem, ...]
    where: str
    secret_store: str = ""


def _header(raw: Any, where: str) -> MetadataItem:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise SpecError(f"{where}: every spec.headers item needs a 'name'")
    name = raw["name"]
    ref = raw.get("secretKeyRef")
    if ref is not None:
        if not isinstance(ref, dict) or not ref.get("name"):
            raise SpecError(f"{where}: header '{name}' secretKeyRef needs a 'name'")
        return MetadataItem(name, secret_ref=SecretRef(str(ref["name"]), str(ref.get("key") or ref["name"])))
    value = raw.get("value")
    return MetadataItem(name, "" if value is None else str(value))


def load_endpoints(documents: Iterable[tuple[str, dict[str, Any]]], app_id: str) -> list[EndpointSpec]:
    """The HTTPEndpoint resources in scope; ``SpecError`` naming the file for anything malformed."""
    specs: list[EndpointSpec] = []
    seen: dict[str, str] = {}
    for source, document in documents:
        name = (document.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise SpecError(f"{source}: an HTTPEndpoint has no metadata.name")
        where = f"{source}: httpendpoint '{name}'"
        spec = document.get("spec") or {}
        base_url = spec.get("baseUrl") if isinstance(spec, dict) else None
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise SpecError(f"{where}: spec.baseUrl must be an http:// or https:// URL")
        if spec.get("clientTLS"):
            raise SpecError(f"{where}: spec.clientTLS is not supported")
        headers = spec.get("headers") or []
        if not isinstance(headers, list):
            raise SpecError(f"{where}: spec.headers must be a list")
        scopes = document.get("scopes") or []
        if scopes and app_id not in scopes:
            continue
        if name in seen:
            raise SpecError(f"{where}: an HTTPEndpoint of that name is already in {seen[name]}")
        seen[name] = source
        auth = document.get("auth") or {}
        store = {str(k).lower(): v for k, v in auth.items()}.get("secretstore", "") if isinstance(auth, dict) else ""
        items = tuple(_header(item, where) for item in headers)
        specs.append(EndpointSpec(name, base_url, items, where, str(store or "")))
    return specs


async def resolve_endpoint(spec: EndpointSpec, secrets: SecretLookup) -> HttpEndpoint:
    """The endpoint with every header value known (``secretKeyRef`` read through ``auth.secretStore``)."""
    headers: list[tuple[str, str]] = []
    for item in spec.headers:
        value = item.value
        if item.secret_ref is not None:
            if not spec.secret_store:
                raise SpecError(f"{spec.where}: header '{item.name}' uses secretKeyRef but auth.secretStore is not set")
            value = await secrets(spec.secret_store, item.secret_ref.name, item.secret_ref.key)
        headers.append((item.name, value))
    return HttpEndpoint(spec.name, spec.base_url, tuple(headers))
