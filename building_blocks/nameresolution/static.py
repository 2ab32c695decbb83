"""``nameresolution.static``: a fixed map from app id to sidecar addresses, e.g. for docker-compose.

An address is a sidecar's internal port (``--dapr-internal-grpc-port``), where other sidecars call it,
not its API port. Configuration::

    nameResolution:
      component: static
      configuration:
        apps:
          orders: orders-sidecar:50002                  # one instance
          billing: [billing-1:50002, billing-2:50002]   # several: load-balanced, failed ones skipped
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from building_blocks._common.metadata import NAMERESOLUTION, parse, text
from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import SpecError
from building_blocks.nameresolution.base import NameResolver, NoHost, ResolveRequest
from building_blocks.nameresolution.dns import split_address

__all__ = ("StaticNameResolver",)


def _addresses(raw: Any, app_id: str, where: str) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    addresses = [str(item).strip() for item in items if str(item).strip()]
    if not addresses:
        raise SpecError(f"{where}: app '{app_id}' has no address")
    for address in addresses:
        try:
            split_address(address)
        except ValueError:
            raise SpecError(f"{where}: app '{app_id}': '{address}' is not host:port") from None
    return addresses


@dataclass(frozen=True, slots=True)
class StaticNameResolverMetadata:
    apps: str = text("apps")  # JSON: app id -> address or list of addresses


class StaticNameResolver(NameResolver):
    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        raw = parse(StaticNameResolverMetadata, metadata, NAMERESOLUTION).apps
        try:
            apps = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            apps = None
        if not isinstance(apps, dict):
            raise SpecError(f"{metadata.where}: configuration 'apps' must map app ids to host:port addresses")
        self.apps = {str(app): _addresses(value, str(app), metadata.where) for app, value in apps.items()}

    async def resolve(self, request: ResolveRequest) -> list[str]:
        addresses = self.apps.get(request.app_id)
        if not addresses:
            raise NoHost()
        return list(addresses)
