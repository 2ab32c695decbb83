"""Lock bodies (Dapr's ``TryLockRequest``/``UnlockRequest`` in protobuf JSON) into the lock block's requests.

As protojson reads them: a field's JSON name and its proto name are both accepted, unknown fields are
ignored, a missing or ``null`` field is its zero value, and an int32 may be a JSON number without fraction
or such a number in a string. Emptiness and positivity are the block's rules, not checked here.
"""

from __future__ import annotations

from app.wire import BAD_BODY, protobuf_object
from building_blocks.errors import InvalidRequest
from building_blocks.lock.base import RenewRequest, TryLockRequest, UnlockRequest

__all__ = ("renew", "try_lock", "unlock")

_NAMES = {
    "resourceId": "resourceId",
    "resource_id": "resourceId",
    "lockOwner": "lockOwner",
    "lock_owner": "lockOwner",
    "expiryInSeconds": "expiryInSeconds",
    "expiry_in_seconds": "expiryInSeconds",
}
_INT32 = range(-(2**31), 2**31)


def _fields(body: bytes) -> dict[str, object]:
    """The known fields of the body by JSON name (the last spelling wins, as protojson's last field does)."""
    return {_NAMES[name]: value for name, value in protobuf_object(body).items() if name in _NAMES}


def _string(fields: dict[str, object], name: str) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{BAD_BODY}{name}: invalid value for string type: {value!r}")
    return value


def _int32(fields: dict[str, object], name: str) -> int:
    value = fields.get(name)
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
        raise InvalidRequest(f"{BAD_BODY}{name}: invalid value for int32 type: {value!r}")
    return number


def try_lock(body: bytes) -> TryLockRequest:
    fields = _fields(body)
    return TryLockRequest(
        _string(fields, "resourceId"), _string(fields, "lockOwner"), _int32(fields, "expiryInSeconds")
    )


def unlock(body: bytes) -> UnlockRequest:
    fields = _fields(body)
    return UnlockRequest(_string(fields, "resourceId"), _string(fields, "lockOwner"))


def renew(body: bytes) -> RenewRequest:
    """The renewal extension takes the lock's body."""
    fields = _fields(body)
    return RenewRequest(_string(fields, "resourceId"), _string(fields, "lockOwner"), _int32(fields, "expiryInSeconds"))
