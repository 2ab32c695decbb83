"""Lock building block: the contract; components live in their own modules."""

from building_blocks.lock.base import LockStatus, LockStore, RenewRequest, TryLockRequest, UnlockRequest

__all__ = ("LockStatus", "LockStore", "RenewRequest", "TryLockRequest", "UnlockRequest")
