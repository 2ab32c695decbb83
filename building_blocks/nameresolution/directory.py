"""In front of the resolver: a short cache, round-robin load balancing and skipping of failed instances.

``candidates`` lists an app id's addresses in the order to try them: rotated by one on every call (round
robin), with the addresses that recently failed (``failed``) moved to the end — still tried when nothing
else works, so a recovered instance comes back without waiting.
"""

from __future__ import annotations

import time

from building_blocks.nameresolution.base import NameResolver, ResolveRequest

__all__ = ("Directory",)


class Directory:
    def __init__(
        self, resolver: NameResolver, port: int, cache_seconds: float = 1.0, quarantine_seconds: float = 5.0
    ) -> None:
        self.resolver = resolver
        self.port = port
        self.cache_seconds = cache_seconds
        self.quarantine_seconds = quarantine_seconds
        self._cache: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._turn: dict[tuple[str, str], int] = {}
        self._failed: dict[str, float] = {}

    async def _addresses(self, key: tuple[str, str]) -> list[str]:
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        addresses = await self.resolver.resolve(ResolveRequest(key[0], key[1], self.port))
        self._cache[key] = (now + self.cache_seconds, addresses)
        return addresses

    async def candidates(self, app_id: str, namespace: str) -> list[str]:
        """Every address of the app, in the order to try; raises the resolver's error (``NoHost``...)."""
        key = (app_id, namespace)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            addresses = cached[1]  # the usual case: no coroutine to make and await
        else:
            addresses = await self._addresses(key)
        if len(addresses) == 1:
            return addresses  # nothing to rotate or reorder (the callers only read the list)
        turn = self._turn.get(key, 0)
        self._turn[key] = turn + 1
        start = turn % len(addresses)
        rotated = addresses[start:] + addresses[:start]
        now = time.monotonic()
        return sorted(rotated, key=lambda address: self._failed.get(address, 0.0) > now)

    def known(self, app_id: str, namespace: str) -> str | None:
        """The app's one address when it is cached and not failing (nothing to resolve, rotate or skip), else
        ``None`` (ask ``candidates``)."""
        cached = self._cache.get((app_id, namespace))
        if cached is None or len(cached[1]) != 1 or cached[0] <= time.monotonic():
            return None
        address = cached[1][0]
        return None if address in self._failed else address

    def failed(self, address: str) -> None:
        self._failed[address] = time.monotonic() + self.quarantine_seconds

    def succeeded(self, address: str) -> None:
        self._failed.pop(address, None)
