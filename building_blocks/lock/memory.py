"""``lock.in-memory``: locks held in this process only, lost on restart.

Metadata: ``keyPrefix`` (read by the block). Expiry uses the monotonic clock; expired locks are dropped when
touched, and swept when the table has doubled since the last sweep.
"""

from __future__ import annotations

import time

from building_blocks._common.metadata import LOCK, NoMetadata, parse
from building_blocks.component import ComponentContext, Metadata
from building_blocks.lock.base import LockStatus, LockStore, RenewRequest, TryLockRequest, UnlockRequest

__all__ = ("InMemoryLockStore",)

_MIN_SWEEP = 1024


class InMemoryLockStore(LockStore):
    """A dict of resource -> (owner, expiry)."""

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        parse(NoMetadata, metadata, LOCK)

    async def init(self) -> None:
        self._locks: dict[str, tuple[str, float]] = {}
        self._sweep_at = _MIN_SWEEP

    def _owner(self, resource: str, now: float) -> str | None:
        held = self._locks.get(resource)
        if held is None:
            return None
        if held[1] <= now:
            del self._locks[resource]
            return None
        return held[0]

    def _sweep(self, now: float) -> None:
        self._locks = {resource: held for resource, held in self._locks.items() if held[1] > now}
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._locks))

    def _check(self, resource: str, owner: str, now: float) -> LockStatus:
        holder = self._owner(resource, now)
        if holder is None:
            return LockStatus.LOCK_DOES_NOT_EXIST
        return LockStatus.SUCCESS if holder == owner else LockStatus.LOCK_BELONGS_TO_OTHERS

    async def try_lock(self, request: TryLockRequest) -> bool:
        now = time.monotonic()
        if self._owner(request.resource_id, now) is not None:
            return False
        if len(self._locks) >= self._sweep_at:
            self._sweep(now)
        self._locks[request.resource_id] = (request.lock_owner, now + request.expiry_in_seconds)
        return True

    async def unlock(self, request: UnlockRequest) -> LockStatus:
        status = self._check(request.resource_id, request.lock_owner, time.monotonic())
        if status is LockStatus.SUCCESS:
            del self._locks[request.resource_id]
        return status

    async def renew(self, request: RenewRequest) -> LockStatus:
        now = time.monotonic()
        status = self._check(request.resource_id, request.lock_owner, now)
        if status is LockStatus.SUCCESS:
            self._locks[request.resource_id] = (request.lock_owner, now + request.expiry_in_seconds)
        return status
