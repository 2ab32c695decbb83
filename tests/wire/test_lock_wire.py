"""The lock decoders: protobuf-JSON bodies into typed requests, with daprd's messages for malformed ones."""

from __future__ import annotations

import pytest

from app.wire import lock
from building_blocks.errors import InvalidRequest
from building_blocks.lock.base import RenewRequest, TryLockRequest, UnlockRequest


def test_json_and_proto_names_and_int32_spellings() -> None:
    body = b'{"resource_id": "r", "lockOwner": "o", "expiry_in_seconds": " 30 ", "unknown": [1]}'
    assert lock.try_lock(body) == TryLockRequest("r", "o", 30)
    assert lock.renew(b'{"resourceId": "r", "lock_owner": "o", "expiryInSeconds": 2.0}') == RenewRequest("r", "o", 2)
    assert lock.unlock(b'{"resourceId": "r", "lockOwner": "o"}') == UnlockRequest("r", "o")


def test_the_last_spelling_of_a_field_wins() -> None:
    assert lock.unlock(b'{"resourceId": "a", "resource_id": "b", "lockOwner": "o"}') == UnlockRequest("b", "o")


@pytest.mark.parametrize("body", [b"", b"  ", b"{}", b'{"resourceId": null, "expiryInSeconds": null}'])
def test_missing_fields_are_zero_values_for_the_block_to_judge(body: bytes) -> None:
    assert lock.try_lock(body) == TryLockRequest("", "", 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1]", "the body must be a JSON object"),
        (b'{"resourceId": 5}', "resourceId: invalid value for string type: 5"),
        (b'{"lockOwner": true}', "lockOwner: invalid value for string type: True"),
        (b'{"expiryInSeconds": "soon"}', "expiryInSeconds: invalid value for int32 type: 'soon'"),
        (b'{"expiryInSeconds": 1.5}', "expiryInSeconds: invalid value for int32 type: 1.5"),
        (b'{"expiryInSeconds": 2147483648}', "expiryInSeconds: invalid value for int32 type: 2147483648"),
        (b'{"expiryInSeconds": false}', "expiryInSeconds: invalid value for int32 type: False"),
    ],
)
def test_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        lock.try_lock(body)
    assert str(raised.value) == f"failed deserializing HTTP body: {message}"


def test_truncated_json_keeps_the_decoders_message() -> None:
    with pytest.raises(InvalidRequest, match=r"^failed deserializing HTTP body: .+"):
        lock.unlock(b"{")


def test_unlock_has_no_expiry_field() -> None:
    """Dapr's ``UnlockRequest`` has no ``expiryInSeconds``: like any unknown field, it is ignored."""
    assert lock.unlock(b'{"resourceId": "r", "lockOwner": "o", "expiryInSeconds": "soon"}') == UnlockRequest("r", "o")
