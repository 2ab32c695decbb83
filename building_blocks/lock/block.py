"""The Lock building block: Dapr's lock API rules in front of the loaded lock stores.

It validates requests in Dapr's order (``expiryInSeconds`` first, then "any lock store loaded", the
resource id, the owner, and last the store's name), prefixes resource ids as Dapr does
(``lock||<keyPrefix>||<resourceId>``, ``keyPrefix`` metadata: appid by default), and calls the stores
through ``Block.operation``, so the HTTP layer reports their failures with the operation's Dapr code.

Renewal is an extension (neither Dapr nor Layotto has a working one): it takes the same body as
``try_lock`` and answers a ``LockStatus`` like ``unlock``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from building_blocks.block import Block, Entry
from building_blocks.errors import ComponentNotConfigured, IllegalKey, InvalidRequest, KeyRefused, Operation
from building_blocks.keyprefix import SEPARATOR
from building_blocks.lock.base import LockStatus, LockStore, RenewRequest, TryLockRequest, UnlockRequest

__all__ = ("LockBlock",)

_Entry = Entry[LockStore, None]

KEY_PREFIX = "lock" + SEPARATOR
_BAD_BODY = "failed deserializing HTTP body: "
# Protobuf JSON accepts a field's JSON name and its proto name.
_NAMES = {
    "resourceId": "resource_id",
    "resource_id": "resource_id",
    "lockOwner": "lock_owner",
    "lock_owner": "lock_owner",
    "expiryInSeconds": "expiry",
    "expiry_in_seconds": "expiry",
}
_INT32 = range(-(2**31), 2**31)


@dataclass(frozen=True, slots=True)
class _Body:
    resource_id: str = ""
    lock_owner: str = ""
    expiry: int = 0


def _string(name: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{_BAD_BODY}{name}: invalid value for string type: {value!r}")
    return value


def _int32(name: str, value: Any) -> int:
    """An int32 as protobuf JSON reads it: a JSON number without fraction, or such a number in a string."""
    if value is None:
        return 0
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if number is None or number not in _INT32:
        raise InvalidRequest(f"{_BAD_BODY}{name}: invalid value for int32 type: {value!r}")
    return number


def _parse(body: Any) -> _Body:
    """A decoded lock/unlock/renew body; an empty body is ``{}``. Unknown fields are ignored, as Dapr does."""
    if not isinstance(body, dict):
        raise InvalidRequest(f"{_BAD_BODY}the body must be a JSON object")
    fields: dict[str, Any] = {}
    for name, value in body.items():
        field = _NAMES.get(name)
        if field is not None:
            fields[field] = value
    return _Body(
        _string("resourceId", fields.get("resource_id")),
        _string("lockOwner", fields.get("lock_owner")),
        _int32("expiryInSeconds", fields.get("expiry")),
    )


class LockBlock(Block[LockStore, None]):
    """All loaded lock stores, and the lock API's operations on them."""

    kind = "lock store"
    type_prefix = "lock"
    component_base = LockStore
    prefixes_keys = True

    def _validated(self, name: str, body: Any, with_expiry: bool) -> tuple[_Entry, _Body]:
        """The store's entry and the parsed body, checked in Dapr's order."""
        request = _parse(body)
        if with_expiry and request.expiry <= 0:
            raise InvalidRequest(f"ExpiryInSeconds is not positive in lock store {name}")
        if not self.components:
            raise ComponentNotConfigured(self.kind, name)
        if not request.resource_id:
            raise InvalidRequest(f"ResourceId is empty in lock store {name}")
        if not request.lock_owner:
            raise InvalidRequest(f"LockOwner is empty in lock store {name}")
        return self.entry(name), request

    @staticmethod
    def _key(entry: _Entry, resource_id: str) -> str:
        """The stored resource id; ``KeyRefused`` when it holds ``||``: Dapr reports it as the store's failure
        (``ERR_TRY_LOCK``...), so it is not the caller's ``IllegalKey`` here."""
        try:
            return KEY_PREFIX + entry.prefixer.key(entry.component.name, resource_id)
        except IllegalKey as exc:
            raise KeyRefused(str(exc)) from None

    async def try_lock(self, name: str, body: Any) -> bool:
        """Decoded ``{"resourceId", "lockOwner", "expiryInSeconds"}``; whether the lock was taken."""
        entry, request = self._validated(name, body, with_expiry=True)
        return await self.operation(Operation.LOCK_TRY, name, request.resource_id, self._try_lock, entry, request)

    async def unlock(self, name: str, body: Any) -> LockStatus:
        """Decoded ``{"resourceId", "lockOwner"}``."""
        entry, request = self._validated(name, body, with_expiry=False)
        return await self.operation(Operation.LOCK_UNLOCK, name, request.resource_id, self._unlock, entry, request)

    async def renew(self, name: str, body: Any) -> LockStatus:
        """Decoded ``{"resourceId", "lockOwner", "expiryInSeconds"}``: the lock's new lifetime from now."""
        entry, request = self._validated(name, body, with_expiry=True)
        return await self.operation(Operation.LOCK_RENEW, name, request.resource_id, self._renew, entry, request)

    # The store's part of each operation: the key is made inside it, so a refused key is the store's failure.

    async def _try_lock(self, entry: _Entry, request: _Body) -> bool:
        key = self._key(entry, request.resource_id)
        return await entry.component.try_lock(TryLockRequest(key, request.lock_owner, request.expiry))

    async def _unlock(self, entry: _Entry, request: _Body) -> LockStatus:
        return await entry.component.unlock(UnlockRequest(self._key(entry, request.resource_id), request.lock_owner))

    async def _renew(self, entry: _Entry, request: _Body) -> LockStatus:
        key = self._key(entry, request.resource_id)
        return await entry.component.renew(RenewRequest(key, request.lock_owner, request.expiry))
