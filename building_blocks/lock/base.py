"""The Lock block's contract: requests, the status enum and the ``LockStore`` base class.

Locks are exclusive, non-blocking and not re-entrant (the same owner locking twice gets ``False``), and
expire ``expiry_in_seconds`` after they are taken or renewed. Resource ids reaching a store are already
prefixed (``lock||<appid>||<resource>``). A lock past its expiry does not exist: it can be taken by anyone,
and unlocking or renewing it answers ``LOCK_DOES_NOT_EXIST``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from building_blocks.component import Component

__all__ = ("LockStatus", "LockStore", "RenewRequest", "TryLockRequest", "UnlockRequest")


class LockStatus(IntEnum):
    """Outcome of an unlock or a renewal: Dapr's ``UnlockResponse.Status``, sent as its number."""

    SUCCESS = 0
    LOCK_DOES_NOT_EXIST = 1
    LOCK_BELONGS_TO_OTHERS = 2
    INTERNAL_ERROR = 3


@dataclass(frozen=True, slots=True)
class TryLockRequest:
    resource_id: str
    lock_owner: str
    expiry_in_seconds: int


@dataclass(frozen=True, slots=True)
class UnlockRequest:
    resource_id: str
    lock_owner: str


@dataclass(frozen=True, slots=True)
class RenewRequest:
    """Extend a held lock to expire ``expiry_in_seconds`` from now; only its owner may."""

    resource_id: str
    lock_owner: str
    expiry_in_seconds: int


class LockStore(Component):
    """Base class of lock stores. Backend failures raise ``ComponentError``; outcomes are never errors."""

    async def try_lock(self, request: TryLockRequest) -> bool:
        """Take the lock if nobody holds it; ``False`` when it is held (by anyone, the caller included)."""
        raise NotImplementedError

    async def unlock(self, request: UnlockRequest) -> LockStatus:
        """Release the lock if ``lock_owner`` holds it."""
        raise NotImplementedError

    async def renew(self, request: RenewRequest) -> LockStatus:
        """Push the expiry of a lock ``lock_owner`` holds to ``expiry_in_seconds`` from now."""
        raise NotImplementedError
