"""The one error table's gRPC column: every domain error has Dapr's gRPC code, a client's mistake is never
INTERNAL or UNKNOWN, and the details a status carries are the ones the HTTP body carries."""

from __future__ import annotations

import pytest
from google.rpc import error_details_pb2, status_pb2

from app.errors import GrpcCode, describe_error
from app.grpc.status import status_metadata
from building_blocks.errors import (
    CLIENT_MISTAKES,
    ComponentNotConfigured,
    ComponentNotFound,
    ETagInvalid,
    ETagMismatch,
    FeatureNotSupported,
    LayottoError,
    Operation,
    OperationFailed,
)
from tests.components.test_block_operation import SAMPLES

SERVER_SIDE = (GrpcCode.INTERNAL, GrpcCode.UNKNOWN)


@pytest.mark.parametrize(
    "error", [e for e in SAMPLES if isinstance(e, CLIENT_MISTAKES)], ids=lambda e: type(e).__name__
)
def test_client_mistakes_are_never_internal_or_unknown(error: LayottoError) -> None:
    assert describe_error(error, "app").grpc_code not in SERVER_SIDE


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ComponentNotFound("state store", "s"), GrpcCode.INVALID_ARGUMENT),
        (ComponentNotConfigured("state store", "s"), GrpcCode.FAILED_PRECONDITION),
        (ComponentNotFound("lock store", "s"), GrpcCode.INVALID_ARGUMENT),
        (ComponentNotConfigured("secret store", "s"), GrpcCode.FAILED_PRECONDITION),
        (OperationFailed(Operation.STATE_SAVE, "s", ETagMismatch("old"), "k"), GrpcCode.ABORTED),
        (OperationFailed(Operation.STATE_DELETE, "s", ETagInvalid("x"), "k"), GrpcCode.INVALID_ARGUMENT),
        (OperationFailed(Operation.STATE_GET, "s", Exception("down"), "k"), GrpcCode.INTERNAL),
        (OperationFailed(Operation.STATE_TRANSACTION, "s", ETagMismatch("old")), GrpcCode.INTERNAL),
        (FeatureNotSupported("s", "transactions"), GrpcCode.UNIMPLEMENTED),
        (FeatureNotSupported("s", "querying"), GrpcCode.INTERNAL),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_daprs_codes(error: LayottoError, code: GrpcCode) -> None:
    assert describe_error(error, "app").grpc_code == code


def test_details_travel_in_the_status_trailer() -> None:
    described = describe_error(ComponentNotFound("state store", "s"), "myapp")
    [(key, value)] = status_metadata(described)
    assert key == "grpc-status-details-bin"
    status = status_pb2.Status.FromString(value)
    assert (status.code, status.message) == (GrpcCode.INVALID_ARGUMENT, "state store s is not found")
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == ("DAPR_STATE_NOT_FOUND", "dapr.io", {"appID": "myapp"})


def test_a_legacy_error_has_no_details() -> None:
    assert status_metadata(describe_error(ComponentNotFound("lock store", "s"), "app")) == ()
