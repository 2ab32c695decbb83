"""Tickets for calls proxied by ``dapr-app-id`` to another app (``app.grpc.proxy``).

Such a call is a stream (any gRPC call is), which the sidecar-to-sidecar hop (HTTP/1.1) cannot carry both
ways at once. So the calling sidecar first asks the callee's sidecar over the hop, authenticated and with the
caller's identity set by the calling sidecar, for a ticket; the callee's sidecar answers with a ticket and the
address of its gRPC port; the calling sidecar then opens the stream there, presenting the ticket. A ticket
is random, bound to one method, used once and valid for ``LIFETIME`` seconds: only a sidecar admitted by the
hop ever holds one, and the identity the app sees is the one the hop brought, never the stream's metadata.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from building_blocks.invocation.headers import Headers

__all__ = ("ADDRESS_HEADER", "LIFETIME", "STREAM_HEADER", "TICKET_HEADER", "TicketDesk")

#: Marks a hop that asks for a ticket (it carries the method in ``layotto-grpc-method``).
STREAM_HEADER = "layotto-grpc-stream"
#: The ticket, in the hop's answer and in the stream's metadata.
TICKET_HEADER = "layotto-grpc-ticket"
#: Where to open the stream (``host:port`` of the callee sidecar's gRPC API), in the hop's answer.
ADDRESS_HEADER = "layotto-grpc-address"
LIFETIME = 30.0
#: Unredeemed tickets kept at most (a caller that asks and never comes back cannot grow the table).
_MAX_OPEN = 10_000


@dataclass(frozen=True, slots=True)
class _Ticket:
    method: str
    identity: Headers
    expires: float


@dataclass
class TicketDesk:
    """This sidecar's open tickets. ``address``: its gRPC API as other sidecars reach it ("" = none)."""

    address: str = ""
    clock: Callable[[], float] = time.monotonic
    _open: dict[str, _Ticket] = field(default_factory=dict)

    def issue(self, method: str, identity: Headers) -> str:
        now = self.clock()
        if len(self._open) >= _MAX_OPEN:
            self._open = {key: ticket for key, ticket in self._open.items() if ticket.expires > now}
            while len(self._open) >= _MAX_OPEN:
                del self._open[next(iter(self._open))]  # the oldest
        ticket = secrets.token_urlsafe(32)
        self._open[ticket] = _Ticket(method, identity, now + LIFETIME)
        return ticket

    def redeem(self, ticket: str, method: str) -> Headers | None:
        """The identity the hop brought for ``ticket``, once; ``None`` when unknown, used, expired or issued
        for another method."""
        found = self._open.pop(ticket, None)
        if found is None or found.method != method or found.expires < self.clock():
            return None
        return found.identity
