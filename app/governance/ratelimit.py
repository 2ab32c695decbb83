"""``middleware.http.ratelimit``: at most ``maxRequestsPerSecond`` per client IP and path, as Dapr's (tollbooth:
one token bucket per ``<ip>|<path>``, refilled at that rate, holding at most ``max(1, int(rate))`` tokens).

The IP is the TCP peer's (tollbooth looks up ``RemoteAddr`` first, so ``X-Forwarded-For`` never decides);
IPv6 addresses count by their /64. A refused request gets 429 ``You have reached maximum request limit.``;
every response carries tollbooth's ``X-Rate-Limit-*`` and ``RateLimit-*`` headers. Buckets are kept in a
bounded table: a full bucket is the same as a new one, so full buckets are dropped first when it is full,
then the least recently used.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import math
import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from app.governance.pipeline import MiddlewareSpec, Next
from app.paths import unescape
from building_blocks.errors import SpecError

__all__ = ("MAX_BUCKETS", "RateLimit", "create")

#: Buckets kept at once (each ~100 bytes): past this, full (then the oldest) buckets are dropped.
MAX_BUCKETS = 100_000
_MESSAGE = "You have reached maximum request limit."


def _client_ip(request: Request) -> tuple[str, str]:
    """(the IP that keys the bucket, ``RemoteAddr`` as Go prints it)."""
    client = request.scope.get("client")
    if not client:
        return "0.0.0.0", ""
    host, port = client[0], client[1]
    remote = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if ":" in host:
        with contextlib.suppress(ValueError):
            host = str(ipaddress.IPv6Network(f"{host}/64", strict=False).network_address)
    return host, remote


class RateLimit:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1, int(rate))
        #: key -> (tokens, when they were counted)
        self.buckets: dict[str, tuple[float, float]] = {}
        rounded = math.floor(rate + 0.5)  # Go's math.Round: halves away from zero
        self._static = [
            (b"x-rate-limit-limit", f"{rate:.2f}".encode()),
            (b"x-rate-limit-duration", b"1"),
            (b"ratelimit-limit", str(rounded).encode()),
            (b"ratelimit-reset", b"1"),
        ]

    def _take(self, key: str) -> tuple[bool, int]:
        now = time.monotonic()
        tokens, then = self.buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if key in self.buckets:
            del self.buckets[key]  # re-inserted last: the dict's order is the order of use
        elif len(self.buckets) >= MAX_BUCKETS:
            self._shrink(now)
        self.buckets[key] = (tokens, now)
        return allowed, int(tokens)

    def _shrink(self, now: float) -> None:
        """Down to 90% of the bound (so the scan is paid once per 10% of new keys, not per request): full
        buckets first, then the least recently used ones."""
        full = [k for k, (tokens, then) in self.buckets.items() if tokens + (now - then) * self.rate >= self.burst]
        for key in full:
            del self.buckets[key]
        excess = len(self.buckets) - MAX_BUCKETS * 9 // 10
        if excess > 0:
            for key in list(itertools.islice(self.buckets, excess)):
                del self.buckets[key]

    async def __call__(self, request: Request, proceed: Next) -> Response:
        ip, remote = _client_ip(request)
        allowed, left = self._take(f"{ip}|{unescape(request.scope['path'])}")
        response = await proceed() if allowed else PlainTextResponse(_MESSAGE, 429)
        headers = response.raw_headers
        headers.extend(self._static)
        headers.append((b"x-rate-limit-request-remote-addr", remote.encode()))
        headers.append((b"ratelimit-remaining", str(left).encode()))
        for name, value in request.scope["headers"]:
            if name == b"x-forwarded-for" and value.strip():
                headers.append((b"x-rate-limit-request-forwarded-for", value))
                break
        return response


def parse_rate(text: str | None, where: str) -> float:
    """``maxRequestsPerSecond`` (default 100): a positive number."""
    if text is None or text == "":
        return 100.0
    try:
        rate = float(text)
    except ValueError:
        raise SpecError(f"{where}: metadata property maxRequestsPerSecond is not a number: {text!r}") from None
    if not rate > 0 or rate == float("inf"):
        raise SpecError(f"{where}: metadata property maxRequestsPerSecond must be a positive value")
    return rate


async def create(spec: MiddlewareSpec) -> RateLimit:
    return RateLimit(parse_rate(spec.metadata.get("maxRequestsPerSecond"), spec.where))
