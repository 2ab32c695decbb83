"""The Lock building block: Dapr's lock API rules in front of the loaded lock stores.

It takes typed requests (decoding is the front's) and checks them in Dapr's order (``expiryInSeconds``
first, then "any lock store loaded", the resource id, the owner, and last the store's name), prefixes
resource ids as Dapr does (``lock||<keyPrefix>||<resourceId>``, ``keyPrefix`` metadata: appid by default),
and calls the stores through ``Block.operation``, so a front reports their failures with the operation's
Dapr code.

Renewal is an extension (neither Dapr nor Layotto has a working one): it takes the same fields as
``try_lock`` and answers a ``LockStatus`` like ``unlock``.
"""

from __future__ import annotations

from building_blocks.block import Block, Entry
from building_blocks.errors import ComponentNotConfigured, IllegalKey, InvalidRequest, KeyRefused, Operation
from building_blocks.keyprefix import SEPARATOR
from building_blocks.lock.base import LockStatus, LockStore, RenewRequest, TryLockRequest, UnlockRequest

__all__ = ("LockBlock",)

_Entry = Entry[LockStore, None]

KEY_PREFIX = "lock" + SEPARATOR


class LockBlock(Block[LockStore, None]):
    """All loaded lock stores, and the lock API's operations on them."""

    kind = "lock store"
    type_prefix = "lock"
    component_base = LockStore
    prefixes_keys = True

    def _validated(self, name: str, resource_id: str, lock_owner: str, expiry: int | None) -> _Entry:
        """The store's entry, once the request passed Dapr's checks in Dapr's order (``expiry`` is ``None``
        for an unlock, which has none)."""
        if expiry is not None and expiry <= 0:
            raise InvalidRequest(f"ExpiryInSeconds is not positive in lock store {name}")
        if not self.components:
            raise ComponentNotConfigured(self.kind, name)
        if not resource_id:
            raise InvalidRequest(f"ResourceId is empty in lock store {name}")
        if not lock_owner:
            raise InvalidRequest(f"LockOwner is empty in lock store {name}")
        return self.entry(name)

    @staticmethod
    def _key(entry: _Entry, resource_id: str) -> str:
        """The stored resource id; ``KeyRefused`` when it holds ``||``: Dapr reports it as the store's failure
        (``ERR_TRY_LOCK``...), so it is not the caller's ``IllegalKey`` here."""
        try:
            return KEY_PREFIX + entry.prefixer.key(entry.component.name, resource_id)
        except IllegalKey as exc:
            raise KeyRefused(str(exc)) from None

    async def try_lock(self, name: str, request: TryLockRequest) -> bool:
        """Whether the lock was taken."""
        entry = self._validated(name, request.resource_id, request.lock_owner, request.expiry_in_seconds)
        return await self.operation(Operation.LOCK_TRY, name, request.resource_id, self._try_lock, entry, request)

    async def unlock(self, name: str, request: UnlockRequest) -> LockStatus:
        entry = self._validated(name, request.resource_id, request.lock_owner, None)
        return await self.operation(Operation.LOCK_UNLOCK, name, request.resource_id, self._unlock, entry, request)

    async def renew(self, name: str, request: RenewRequest) -> LockStatus:
        """The lock's new lifetime, from now."""
        entry = self._validated(name, request.resource_id, request.lock_owner, request.expiry_in_seconds)
        return await self.operation(Operation.LOCK_RENEW, name, request.resource_id, self._renew, entry, request)

    # The store's part of each operation: the key is made inside it, so a refused key is the store's failure.

    async def _try_lock(self, entry: _Entry, request: TryLockRequest) -> bool:
        key = self._key(entry, request.resource_id)
        return await entry.component.try_lock(TryLockRequest(key, request.lock_owner, request.expiry_in_seconds))

    async def _unlock(self, entry: _Entry, request: UnlockRequest) -> LockStatus:
        return await entry.component.unlock(UnlockRequest(self._key(entry, request.resource_id), request.lock_owner))

    async def _renew(self, entry: _Entry, request: RenewRequest) -> LockStatus:
        key = self._key(entry, request.resource_id)
        return await entry.component.renew(RenewRequest(key, request.lock_owner, request.expiry_in_seconds))
