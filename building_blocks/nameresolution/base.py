"""The name-resolver contract: register this sidecar, resolve an app id to ``host:port`` addresses.

Addresses are sidecars' internal ports (``--dapr-internal-grpc-port``), where sidecars call each other;
the API port is the app's and is never advertised.

A resolver is a ``Component`` built from the ``configuration`` map of a ``kind: Configuration`` resource's
``spec.nameResolution`` (Dapr's layout). Before ``init()`` the runtime binds the ``Instance`` it runs as;
resolvers that keep a registry (``nameresolution.sqlite``) register it there, the others ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass

from building_blocks.component import Component
from building_blocks.errors import ComponentError

__all__ = ("Instance", "NameResolver", "NoHost", "ResolveRequest")


@dataclass(frozen=True, slots=True)
class Instance:
    """This sidecar as others reach it (its internal port). ``port`` = 0: it serves no app, is not advertised."""

    app_id: str
    namespace: str
    host: str
    port: int

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ResolveRequest:
    app_id: str
    namespace: str
    #: The sidecar port to assume when the resolver knows only host names (DNS): this sidecar's own internal port.
    port: int


class NoHost(ComponentError):
    """No live sidecar serves the app id (Dapr's sqlite resolver message)."""

    def __init__(self) -> None:
        super().__init__("no host found with the given ID")


class NameResolver(Component):
    """Base of every resolver. ``resolve`` returns every known address, ``host:port``; never empty."""

    instance: Instance | None = None

    def bind(self, instance: Instance) -> None:
        self.instance = instance

    async def resolve(self, request: ResolveRequest) -> list[str]:
        raise NotImplementedError
