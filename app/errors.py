"""The one table from errors to Dapr's wire: error code, message, details, HTTP status and gRPC status.

Each entry describes an error once (``WireError``); each front renders that: the HTTP front as a body
(``render_error``), the gRPC front as a status with the same details (``app.grpc.status``). Two body formats
coexist in Dapr, and both are produced here:
* legacy ``{"errorCode": "...", "message": "..."}`` (over gRPC: code and message only);
* rich, with ``details`` (google.rpc ErrorInfo / ResourceInfo / BadRequest / Help), for the errors Dapr
  builds with its newer error kit (state store lookup, illegal keys, query, transaction support); over gRPC
  the same details travel in ``grpc-status-details-bin``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson
from starlette.responses import Response

from building_blocks.errors import (
    AppChannelMissing,
    BulkError,
    BulkEventsInvalid,
    BulkPublishFailed,
    ComponentNotConfigured,
    ComponentNotFound,
    ETagInvalid,
    ETagMismatch,
    EventInvalid,
    FeatureNotSupported,
    IllegalKey,
    InvalidOption,
    InvalidRequest,
    InvocationFailed,
    NotFoundInStore,
    Operation,
    OperationFailed,
    PublishMetadataInvalid,
    SecretDenied,
    TooManyOperations,
    TopicForbidden,
    UnsupportedOperation,
)

__all__ = ("ApiError", "GrpcCode", "WireError", "describe_error", "error_response", "render_error")

log = logging.getLogger(__name__)

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RESOURCE_INFO = "type.googleapis.com/google.rpc.ResourceInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
HELP = "type.googleapis.com/google.rpc.Help"
STATE_STORES_DOCS = "https://docs.dapr.io/reference/components-reference/supported-state-stores/"


class GrpcCode(IntEnum):
    """gRPC's status codes (``grpc.StatusCode`` by number), so the table needs no gRPC import."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


#: The gRPC code of an HTTP status where an entry names none (Dapr's errors pair them this way).
_GRPC_OF_HTTP = {
    400: GrpcCode.INVALID_ARGUMENT,
    401: GrpcCode.UNAUTHENTICATED,
    403: GrpcCode.PERMISSION_DENIED,
    404: GrpcCode.NOT_FOUND,
    409: GrpcCode.ABORTED,
    413: GrpcCode.RESOURCE_EXHAUSTED,
    429: GrpcCode.RESOURCE_EXHAUSTED,
    501: GrpcCode.UNIMPLEMENTED,
    503: GrpcCode.UNAVAILABLE,
    504: GrpcCode.DEADLINE_EXCEEDED,
}


def grpc_code_of(status: int) -> GrpcCode:
    return _GRPC_OF_HTTP.get(status, GrpcCode.INTERNAL)


@dataclass(frozen=True, slots=True)
class WireError:
    """One error in Dapr's terms, for either front. ``body``/``headers`` replace the error body where Dapr
    answers with a body of its own (bulk publish, unsubscribe); ``reason`` is the ErrorInfo reason daprd
    attaches over gRPC to an error that has no details over HTTP ("" = none)."""

    status: int
    code: str
    message: str
    details: list[dict[str, Any]] | None = None
    grpc: GrpcCode | None = None
    reason: str = ""
    body: bytes | None = None
    headers: dict[str, str] | None = None

    @property
    def grpc_code(self) -> GrpcCode:
        return self.grpc if self.grpc is not None else grpc_code_of(self.status)

    def response(self) -> Response:
        if self.body is not None:
            return Response(self.body, self.status, self.headers, media_type="application/json")
        return error_response(self.status, self.code, self.message, self.details)


class ApiError(Exception):
    """An error that exists only at a front (health, routing, auth), already in Dapr's terms."""

    def __init__(self, status: int, code: str, message: str, grpc: GrpcCode | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.grpc = grpc


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    body: dict[str, Any] = {"errorCode": code, "message": message}
    if details is not None:
        body["details"] = details
    return Response(orjson.dumps(body), status, media_type="application/json")


def _error_info(reason: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    return {"@type": ERROR_INFO, "reason": reason, "domain": "dapr.io", "metadata": metadata}


def _resource_info(resource_type: str, name: str) -> dict[str, Any]:
    return {
        "@type": RESOURCE_INFO,
        "resource_type": resource_type,
        "resource_name": name,
        "owner": "",
        "description": "",
    }


# -- block operation failures: (code, message) by operation, status by the failure's kind -------------------

_OPERATION_CODES: dict[Operation, tuple[str, Callable[[OperationFailed], str]]] = {
    Operation.STATE_GET: ("ERR_STATE_GET", lambda e: f"fail to get {e.key} from state store {e.store}: {e.cause}"),
    Operation.STATE_SAVE: ("ERR_STATE_SAVE", lambda e: f"failed saving state in state store {e.store}: {e.cause}"),
    Operation.STATE_DELETE: ("ERR_STATE_DELETE", lambda e: f"failed deleting state with key {e.key}: {e.cause}"),
    Operation.STATE_BULK_GET: ("ERR_STATE_BULK_GET", lambda e: str(e.cause)),
    Operation.STATE_TRANSACTION: (
        "ERR_STATE_TRANSACTION",
        lambda e: f"error while executing state transaction: {e.cause}",
    ),
    Operation.SECRET_GET: (
        "ERR_SECRET_GET",
        lambda e: f"failed getting secret with key {e.key} from secret store {e.store}: {e.cause}",
    ),
    Operation.SECRET_BULK_GET: (
        "ERR_SECRET_GET",
        lambda e: f"failed getting secrets from secret store {e.store}: {e.cause}",
    ),
    Operation.LOCK_TRY: ("ERR_TRY_LOCK", lambda e: f"failed to try acquiring lock: {e.cause}"),
    Operation.LOCK_UNLOCK: ("ERR_UNLOCK", lambda e: f"failed to release lock: {e.cause}"),
    Operation.LOCK_RENEW: ("ERR_RENEW_LOCK", lambda e: f"failed to renew lock: {e.cause}"),
    Operation.SEQUENCER_NEXT_ID: (
        "ERR_SEQUENCER_GET_NEXT_ID",
        lambda e: f"failed to get next id of {e.key} from sequencer store {e.store}: {e.cause}",
    ),
    Operation.SEQUENCER_SEGMENT: (
        "ERR_SEQUENCER_GET_SEGMENT",
        lambda e: f"failed to get a segment of {e.key} from sequencer store {e.store}: {e.cause}",
    ),
    Operation.CONFIGURATION_GET: (
        "ERR_CONFIGURATION_GET",
        lambda e: f"failed to get [{e.key}] from Configuration store {e.store}: {e.cause}",
    ),
    Operation.CONFIGURATION_SUBSCRIBE: (
        "ERR_CONFIGURATION_SUBSCRIBE",
        lambda e: f"failed to subscribe [{e.key}] from Configuration store {e.store}: {e.cause}",
    ),
    # Not Dapr (Layotto's writes): codes in Dapr's style.
    Operation.CONFIGURATION_SAVE: (
        "ERR_CONFIGURATION_SAVE",
        lambda e: f"failed to save [{e.key}] in Configuration store {e.store}: {e.cause}",
    ),
    Operation.CONFIGURATION_DELETE: (
        "ERR_CONFIGURATION_DELETE",
        lambda e: f"failed to delete [{e.key}] from Configuration store {e.store}: {e.cause}",
    ),
}

_ETAG_STATUS_OPERATIONS = (Operation.STATE_SAVE, Operation.STATE_DELETE)


#: Configuration failures daprd reports over gRPC with an ErrorInfo whose reason is the error code.
_REASONED_OPERATIONS = frozenset(
    {Operation.CONFIGURATION_GET, Operation.CONFIGURATION_SUBSCRIBE, Operation.CONFIGURATION_SAVE}
    | {Operation.CONFIGURATION_DELETE, Operation.STATE_GET, Operation.STATE_BULK_GET, Operation.STATE_TRANSACTION}
    | set(_ETAG_STATUS_OPERATIONS)
)


def _operation_failed(error: OperationFailed, app_id: str) -> WireError:
    if error.operation is Operation.PUBSUB_PUBLISH:
        text = f"error when publishing to topic {error.key} in pubsub {error.store}: {error.cause}"
        metadata = {"topic": error.key, "error": str(error.cause)}
        return _pubsub_error(
            500, "ERR_PUBSUB_PUBLISH_MESSAGE", "DAPR_PUBSUB_PUBLISH_MESSAGE", error.store, text, metadata
        )
    # Dapr reports an option its store refuses as a store failure (500); it is the client's mistake: 400.
    status = 400 if isinstance(error.cause, InvalidOption) else 500
    if error.operation is Operation.STATE_QUERY:
        return WireError(
            status,
            "ERR_STATE_QUERY",
            f"state store {error.store} query failed: {error.cause}",
            [_error_info("DAPR_STATE_QUERY_FAILED"), _resource_info("state", error.store)],
        )
    if error.operation is Operation.CONFIGURATION_UNSUBSCRIBE:  # ERR_CONFIGURATION_UNSUBSCRIBE, Dapr's own body
        text = f"failed to unsubscribe to configuration request {error.key}: {error.cause}"
        unknown = isinstance(error.cause, NotFoundInStore)  # daprd: 500; an id never given out is the client's
        body = orjson.dumps({"ok": False, "message": text})
        return WireError(400 if unknown else 500, "ERR_CONFIGURATION_UNSUBSCRIBE", text, body=body)
    code, message = _OPERATION_CODES[error.operation]
    reason = code if error.operation in _REASONED_OPERATIONS else ""
    if error.operation in _ETAG_STATUS_OPERATIONS:
        cause = error.cause
        if isinstance(cause, BulkError):
            cause = cause.first(ETagMismatch) or cause.first(ETagInvalid) or cause
        prefix = message(OperationFailed(error.operation, error.store, Exception(""), error.key))
        if isinstance(cause, ETagMismatch):
            detail = f"possible etag mismatch. error from state store: {error.cause}"
            return WireError(409, code, prefix + detail, grpc=GrpcCode.ABORTED, reason=reason)
        if isinstance(cause, ETagInvalid):
            return WireError(400, code, f"{prefix}invalid etag value: {error.cause}", reason=reason)
    # daprd answers a failed configuration subscription with InvalidArgument over gRPC
    grpc = GrpcCode.INVALID_ARGUMENT if error.operation is Operation.CONFIGURATION_SUBSCRIBE else None
    return WireError(status, code, message(error), grpc=grpc, reason=reason)


# -- everything else ----------------------------------------------------------------------------------------


# Component lookup failures by block kind: (status, code, message template, ErrorInfo reason or "" for legacy).
# Over gRPC, "not configured" is FailedPrecondition and "not found" InvalidArgument, whatever the HTTP status.
_NOT_CONFIGURED: dict[str, tuple[int, str, str, str]] = {
    "state store": (
        500,
        "ERR_STATE_STORE_NOT_CONFIGURED",
        "state store {name} is not configured",
        "DAPR_STATE_NOT_CONFIGURED",
    ),
    "secret store": (500, "ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured", ""),
    "pubsub": (400, "ERR_PUBSUB_NOT_CONFIGURED", "no pubsub is configured", "DAPR_PUBSUB_NOT_CONFIGURED"),
    "lock store": (500, "ERR_LOCK_STORE_NOT_CONFIGURED", "lock store is not configured", ""),
    "sequencer store": (500, "ERR_SEQUENCER_STORE_NOT_CONFIGURED", "sequencer store is not configured", ""),
    "configuration store": (
        500,
        "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
        "configuration stores not configured",
        "",
    ),
}
_NOT_FOUND: dict[str, tuple[int, str, str, str]] = {
    "state store": (400, "ERR_STATE_STORE_NOT_FOUND", "state store {name} is not found", "DAPR_STATE_NOT_FOUND"),
    "secret store": (401, "ERR_SECRET_STORE_NOT_FOUND", "failed finding secret store with key {name}", ""),
    "pubsub": (404, "ERR_PUBSUB_NOT_FOUND", "pubsub {name} is not found", "DAPR_PUBSUB_NOT_FOUND"),
    "lock store": (400, "ERR_LOCK_STORE_NOT_FOUND", "lock store {name} not found", ""),
    "sequencer store": (400, "ERR_SEQUENCER_STORE_NOT_FOUND", "sequencer store {name} not found", ""),
    "configuration store": (400, "ERR_CONFIGURATION_STORE_NOT_FOUND", "configuration store {name} not found", ""),
}


def _lookup_failure(
    table: dict[str, tuple[int, str, str, str]],
    error: ComponentNotConfigured | ComponentNotFound,
    app_id: str,
    grpc: GrpcCode,
) -> WireError:
    status, code, template, reason = table[error.block]
    details = [_error_info(reason, {"appID": app_id})] if reason else None
    grpc_reason = code if error.block == "configuration store" else ""
    return WireError(status, code, template.format(name=error.name), details, grpc, grpc_reason)


def _not_configured(error: ComponentNotConfigured, app_id: str) -> WireError:
    return _lookup_failure(_NOT_CONFIGURED, error, app_id, GrpcCode.FAILED_PRECONDITION)


def _not_found(error: ComponentNotFound, app_id: str) -> WireError:
    return _lookup_failure(_NOT_FOUND, error, app_id, GrpcCode.INVALID_ARGUMENT)


def _illegal_key(error: IllegalKey, app_id: str) -> WireError:
    message = f"api error: code = InvalidArgument desc = {error}"
    return WireError(
        400,
        "ERR_MALFORMED_REQUEST",
        message,
        [
            {"@type": BAD_REQUEST, "field_violations": [{"field": error.key, "description": message}]},
            _resource_info("state", error.store),
            _error_info("DAPR_STATE_ILLEGAL_KEY"),
        ],
    )


def _too_many(error: TooManyOperations, app_id: str) -> WireError:
    metadata = {"currentOpsTransaction": str(error.count), "maxOpsPerTransaction": str(error.limit)}
    return WireError(
        400,
        "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS",
        str(error),
        [_error_info("DAPR_STATE_TOO_MANY_TRANSACTIONS", metadata)],
    )


def _not_supported(error: FeatureNotSupported, app_id: str) -> WireError:
    if error.feature == "querying":
        return WireError(
            500,
            "ERR_STATE_STORE_NOT_SUPPORTED",
            "state store does not support querying",
            [_resource_info("state", error.store), _error_info("DAPR_STATE_QUERYING_NOT_SUPPORTED")],
        )
    return WireError(
        500,
        "ERR_STATE_STORE_NOT_SUPPORTED",
        f"state store {error.store} doesn't support transactions",
        [
            {
                "@type": HELP,
                "links": [
                    {
                        "description": "Check the list of state stores and the features they support",
                        "url": STATE_STORES_DOCS,
                    }
                ],
            },
            _resource_info("state", error.store),
            _error_info("DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"),
        ],
        GrpcCode.UNIMPLEMENTED,
    )


def _pubsub_error(
    status: int,
    code: str,
    reason: str,
    pubsub: str,
    message: str,
    metadata: dict[str, str],
    grpc: GrpcCode | None = None,
) -> WireError:
    resource = {**_resource_info("pubsub", pubsub), "description": message}
    return WireError(status, code, message, [_error_info(reason, metadata), resource], grpc)


def _topic_forbidden(error: TopicForbidden, app_id: str) -> WireError:
    metadata = {"appID": app_id, "topic": error.topic}
    return _pubsub_error(403, "ERR_PUBSUB_FORBIDDEN", "DAPR_PUBSUB_FORBIDDEN", error.pubsub, str(error), metadata)


def _secret_denied(error: SecretDenied, app_id: str) -> WireError:
    return WireError(403, "ERR_PERMISSION_DENIED", str(error))


def _publish_metadata(error: PublishMetadataInvalid, app_id: str) -> WireError:
    metadata = {"appID": app_id, "topic": error.topic}
    return _pubsub_error(
        400, "ERR_PUBSUB_REQUEST_METADATA", "DAPR_PUBSUB_METADATA_DESERIALIZATION", error.pubsub, str(error), metadata
    )


def _event_invalid(error: EventInvalid, app_id: str) -> WireError:
    metadata = {"appID": app_id, "topic": error.topic, "error": error.detail}
    # daprd answers 500; a body that is not a CloudEvent is the client's mistake.
    return _pubsub_error(
        400, "ERR_PUBSUB_CLOUD_EVENTS_SER", "DAPR_PUBSUB_CLOUD_EVENT_CREATION", error.pubsub, str(error), metadata
    )


_BULK_REASONS = {
    "unmarshal": "DAPR_PUBSUB_UNMARSHAL_EVENTS",
    "entry": "DAPR_PUBSUB_MARSHAL_EVENTS",
    "envelope": "DAPR_PUBSUB_MARSHAL_ENVELOPE",
}


def _bulk_invalid(error: BulkEventsInvalid, app_id: str) -> WireError:
    metadata = {"appID": app_id, "topic": error.topic}
    reason = _BULK_REASONS[error.kind]
    return _pubsub_error(400, "ERR_PUBSUB_EVENTS_SER", reason, error.pubsub, str(error), metadata)


def _bulk_failed(error: BulkPublishFailed, app_id: str) -> WireError:
    """Over gRPC, daprd answers OK with the failed entries: the gRPC front catches this error itself."""
    failed = [{"entryId": entry_id, "error": message} for entry_id, message in error.failures]
    body = orjson.dumps({"failedEntries": failed, "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE"})
    headers = {"metadata.responseData": body.decode(), "metadata.error": str(error)}
    return WireError(500, "ERR_PUBSUB_PUBLISH_MESSAGE", str(error), body=body, headers=headers)


def _api_error(error: ApiError, app_id: str) -> WireError:
    return WireError(error.status, error.code, error.message, grpc=error.grpc)


def _unsupported_operation(error: UnsupportedOperation, app_id: str) -> WireError:
    return WireError(400, "ERR_NOT_SUPPORTED_STATE_OPERATION", str(error), grpc=GrpcCode.UNIMPLEMENTED)


def _app_channel_missing(error: AppChannelMissing, app_id: str) -> WireError:
    return WireError(500, "ERR_APP_CHANNEL_NIL", str(error))


def _invalid_request(error: InvalidRequest, app_id: str) -> WireError:
    return WireError(400, "ERR_MALFORMED_REQUEST", str(error))


def _invocation_failed(error: InvocationFailed, app_id: str) -> WireError:
    return WireError(500, "ERR_DIRECT_INVOKE", str(error))


_RENDERERS: dict[type[Exception], Callable[[Any, str], WireError]] = {
    ApiError: _api_error,
    OperationFailed: _operation_failed,
    AppChannelMissing: _app_channel_missing,
    ComponentNotConfigured: _not_configured,
    ComponentNotFound: _not_found,
    IllegalKey: _illegal_key,
    TooManyOperations: _too_many,
    UnsupportedOperation: _unsupported_operation,
    InvalidRequest: _invalid_request,
    InvocationFailed: _invocation_failed,
    FeatureNotSupported: _not_supported,
    TopicForbidden: _topic_forbidden,
    SecretDenied: _secret_denied,
    PublishMetadataInvalid: _publish_metadata,
    EventInvalid: _event_invalid,
    BulkEventsInvalid: _bulk_invalid,
    BulkPublishFailed: _bulk_failed,
}


def describe_error(error: Exception, app_id: str) -> WireError:
    """Dapr's terms for ``error``; the most specific entry of the table wins (MRO order).

    Client input never gets past the table: every mistake a request can make is a domain error. Anything
    else is a bug of the sidecar, logged with its traceback and answered with Dapr's generic ``ERROR``."""
    for kind in type(error).__mro__:
        renderer = _RENDERERS.get(kind)
        if renderer is not None:
            return renderer(error, app_id)
    log.error(
        "BUG: %s is not a domain error; answering 500 ERROR. Raise a building_blocks.errors error instead.",
        type(error).__name__,
        exc_info=error,
    )
    return WireError(500, "ERROR", str(error) or type(error).__name__, grpc=GrpcCode.INTERNAL)


def render_error(error: Exception, app_id: str) -> Response:
    """Dapr's HTTP response for ``error``."""
    return describe_error(error, app_id).response()
