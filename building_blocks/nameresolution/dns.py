"""``nameresolution.dns`` (alias ``nameresolution.kubernetes``): an address from a template, then DNS.

Like Dapr's Kubernetes resolver: ``{appID}-dapr.{namespace}.svc.{clusterDomain}:{port}`` by default, each
resolved IP being one instance (so a headless service load-balances). Configuration: ``template``
(placeholders ``{appID}``, ``{namespace}``, ``{port}``, ``{clusterDomain}``, and Dapr's Go-template
spellings ``{{.ID}}``, ``{{.Namespace}}``, ``{{.Port}}``), ``clusterDomain`` (``cluster.local``), ``port``
(default: this sidecar's own internal port, ``--dapr-internal-grpc-port``: set the same one on every
sidecar, as Dapr's 50002 on Kubernetes), ``resolveIPs`` (true; false hands the host name to the HTTP client).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from building_blocks._common.metadata import NAMERESOLUTION, boolean, integer, parse, text
from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError, SpecError
from building_blocks.nameresolution.base import NameResolver, ResolveRequest

__all__ = ("DEFAULT_TEMPLATE", "DNSNameResolver", "split_address")

DEFAULT_TEMPLATE = "{appID}-dapr.{namespace}.svc.{clusterDomain}:{port}"
_GO_SPELLINGS = {"{{.ID}}": "{appID}", "{{.Namespace}}": "{namespace}", "{{.Port}}": "{port}"}


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) -> (host, port); ``ValueError`` when there is no numeric port."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"address '{address}' has no port")
    return host.strip("[]"), int(port)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class DNSNameResolverMetadata:
    template: str = text("template", DEFAULT_TEMPLATE)
    cluster_domain: str = text("clusterDomain", "cluster.local")
    port: int = integer("port", 0)  # 0: this sidecar's internal port
    resolve_ips: bool = boolean("resolveIPs", True)


class DNSNameResolver(NameResolver):
    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(DNSNameResolverMetadata, metadata, NAMERESOLUTION)
        template = settings.template
        for go, ours in _GO_SPELLINGS.items():
            template = template.replace(go, ours)
        self.template = template
        self.cluster_domain = settings.cluster_domain
        self.port = settings.port
        self.resolve_ips = settings.resolve_ips
        try:
            split_address(self._render(ResolveRequest("app", "default", 1)))
        except (KeyError, ValueError, IndexError) as exc:
            raise SpecError(f"{metadata.where}: template '{template}' must give host:port ({exc})") from None

    def _render(self, request: ResolveRequest) -> str:
        values = {
            "appID": request.app_id,
            "app-id": request.app_id,
            "namespace": request.namespace or "default",
            "port": self.port or request.port,
            "clusterDomain": self.cluster_domain,
        }
        return self.template.format_map(values)

    async def resolve(self, request: ResolveRequest) -> list[str]:
        host, port = split_address(self._render(request))
        if not self.resolve_ips:
            return [join_address(host, port)]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ComponentError(f"failed to resolve address for '{host}': {exc.strerror or exc}") from None
        addresses = dict.fromkeys(join_address(str(info[4][0]), port) for info in infos)
        return list(addresses)
