"""The invocation block's contract: one call, the transport that carries it, the answer that comes back.

The block (``building_blocks.invocation.block``) decides where a call goes and how often it is tried; a
``Transport`` only moves bytes: to the local app (the app channel), to another sidecar at an address (the
hop), or to an external URL. A front (HTTP today) supplies the transport and turns its ``Reply`` back into
its own answer; the name resolver that finds other sidecars is the block's component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

from building_blocks.invocation.body import RequestBody
from building_blocks.invocation.headers import Headers
from building_blocks.invocation.targets import Target

__all__ = ("MISROUTED", "SIDECAR_ERROR", "Call", "Reply", "Transport", "TransportFailed")

#: The header a sidecar answers a hop with when it no longer serves the app id asked for (a stale registry
#: row): the caller then tries the next instance.
MISROUTED = "layotto-misrouted"
#: The header a sidecar answers a hop with when the error is its own, not its app's (``ERR_DIRECT_INVOKE``):
#: a gRPC front reports it as daprd does (INTERNAL with the message), not as an app's HTTP status.
SIDECAR_ERROR = "layotto-sidecar-error"


class Reply(Protocol):
    """A target's answer, as much of it as the block needs: its status, a header, its body (to buffer an
    error answer that may be retried), and its release."""

    @property
    def status_code(self) -> int: ...

    def header(self, name: str) -> str | None: ...

    async def aread(self) -> bytes: ...

    async def aclose(self) -> None: ...


R = TypeVar("R", bound=Reply)
R_co = TypeVar("R_co", bound=Reply, covariant=True)


@dataclass(frozen=True, slots=True)
class Call:
    """One invocation as the caller made it: verb, the method (path on the target), the raw query string, the
    caller's headers (lower-case names) and its body."""

    verb: str
    method: str
    query: bytes
    headers: Headers
    body: RequestBody


class TransportFailed(Exception):
    """The transport could not deliver or bring back an answer. ``reason`` is Go's wording of the failure;
    ``connect_failed``: nothing was sent (another instance may be tried at once)."""

    def __init__(self, reason: str, connect_failed: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connect_failed = connect_failed


class Transport(Protocol[R_co]):
    """What carries calls for the block; every failure to do so is ``TransportFailed``."""

    #: Whether this sidecar has an app to call (``--app-port``).
    has_app: bool

    async def app(self, verb: str, method: str, query: bytes, headers: Headers, body: RequestBody) -> R_co:
        """Call this sidecar's app (``TransportFailed`` with Go's ``url.Error`` wording)."""
        ...

    async def peer(self, address: str, verb: str, path: str, query: bytes, headers: Headers, body: RequestBody) -> R_co:
        """Call ``path`` (already escaped) on the sidecar at ``address`` (``host:port``), on its internal
        listener; ``connect_failed`` when no connection could be made."""
        ...

    async def external(
        self, target: Target, verb: str, method: str, query: bytes, headers: Headers, body: RequestBody
    ) -> R_co:
        """Call an HTTPEndpoint or URL target."""
        ...

    def hop_headers(self) -> Headers:
        """The credentials a hop carries (the hop secret), if any."""
        ...
