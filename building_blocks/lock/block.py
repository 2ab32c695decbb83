"""The Lock building block: Dapr's lock API rules in front of the loaded lock stores.

It validates requests in Dapr's order (``expiryInSeconds`` first, then "any lock store loaded", the
resource id, the owner, and last the store's name), prefixes resource ids as Dapr does
(``lock||<keyPrefix>||<resourceId>``, ``keyPrefix`` metadata: appid by default), and wraps every failure
of the store in ``OperationFailed``, so the HTTP layer reports it with the operation's Dapr code.

Renewal is an extension (neither Dapr nor Layotto has a working one): it takes the same body as
``try_lock`` and answers a ``LockStatus`` like ``unlock``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from building_blocks.block import Block
from building_blocks.component import ComponentContext
from building_blocks.errors import ComponentNotConfigured, InvalidRequest, LayottoError, Operation, OperationFailed
from building_blocks.keyprefix import SEPARATOR, KeyPrefixer
from building_blocks.lock.base import LockStatus, LockStore, RenewRequest, TryLockRequest, UnlockRequest

__all__ = ("LockBlock",)

log = logging.getLogger(__name__)
T = TypeVar("T")

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


class LockBlock(Block[LockStore]):
    """All loaded lock stores, and the lock API's operations on them."""

    kind = "lock store"
    type_prefix = "lock"
    component_base = LockStore

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._prefixers: dict[str, KeyPrefixer] = {}

    def add(self, component: LockStore, where: str) -> None:
        super().add(component, where)
        self._prefixers[component.name] = KeyPrefixer.of(component.name, component.metadata, self.context)

    def remove(self, name: str) -> None:
        super().remove(name)
        self._prefixers.pop(name, None)

    def _validated(self, name: str, body: Any, with_expiry: bool) -> tuple[LockStore, _Body]:
        """The store and the parsed body, checked in Dapr's order."""
        request = _parse(body)
        if with_expiry and request.expiry <= 0:
            raise InvalidRequest(f"ExpiryInSeconds is not positive in lock store {name}")
        if not self.components:
            raise ComponentNotConfigured(self.kind, name)
        if not request.resource_id:
            raise InvalidRequest(f"ResourceId is empty in lock store {name}")
        if not request.lock_owner:
            raise InvalidRequest(f"LockOwner is empty in lock store {name}")
        return self.component(name), request

    def _key(self, store: LockStore, resource_id: str) -> str:
        """The stored resource id; ``IllegalKey`` (a store failure, as in Dapr) when it holds ``||``."""
        return KEY_PREFIX + self._prefixers[store.name].key(store.name, resource_id)

    @staticmethod
    async def _do(operation: Operation, store: str, key: str, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        try:
            return await call()
        except Exception as exc:
            if not isinstance(exc, LayottoError):
                log.exception("%s on lock store %s failed unexpectedly", operation, store)
            raise OperationFailed(operation, store, exc, key) from exc

    async def try_lock(self, name: str, body: Any) -> bool:
        """Decoded ``{"resourceId", "lockOwner", "expiryInSeconds"}``; whether the lock was taken."""
        store, request = self._validated(name, body, with_expiry=True)

        async def call() -> bool:
            key = self._key(store, request.resource_id)
            return await store.try_lock(TryLockRequest(key, request.lock_owner, request.expiry))

        return await self._do(Operation.LOCK_TRY, name, request.resource_id, call)

    async def unlock(self, name: str, body: Any) -> LockStatus:
        """Decoded ``{"resourceId", "lockOwner"}``."""
        store, request = self._validated(name, body, with_expiry=False)

        async def call() -> LockStatus:
            return await store.unlock(UnlockRequest(self._key(store, request.resource_id), request.lock_owner))

        return await self._do(Operation.LOCK_UNLOCK, name, request.resource_id, call)

    async def renew(self, name: str, body: Any) -> LockStatus:
        """Decoded ``{"resourceId", "lockOwner", "expiryInSeconds"}``: the lock's new lifetime from now."""
        store, request = self._validated(name, body, with_expiry=True)

        async def call() -> LockStatus:
            key = self._key(store, request.resource_id)
            return await store.renew(RenewRequest(key, request.lock_owner, request.expiry))

        return await self._do(Operation.LOCK_RENEW, name, request.resource_id, call)
