"""Domain errors raised by building blocks and components. They know nothing of HTTP.

``app/errors.py`` maps each of them to Dapr's error code, HTTP status and body, in one table.

    LayottoError
    ├── SpecError                  a resource file is malformed or names an unknown type / bad metadata
    ├── ComponentNotConfigured     no component of this block is loaded at all
    ├── ComponentNotFound          no component of this block has that name
    ├── InvalidRequest             the caller's input is malformed (bad JSON, missing field, ...)
    │   ├── IllegalKey             a key contains the reserved ``||`` separator
    │   ├── UnsupportedOperation   a transaction names an operation other than upsert/delete
    │   └── TooManyOperations      a transaction is larger than the store accepts
    ├── FeatureNotSupported        the component does not implement an optional feature
    ├── AppChannelMissing          an API needs the app channel and the sidecar has none (no --app-port)
    ├── InvocationFailed           a service invocation could not reach its target (resolution, network, policy)
    ├── TopicForbidden             topic scoping refuses this app the topic
    ├── SecretDenied               the Configuration's secret scopes refuse this app the secret
    ├── PublishMetadataInvalid     a publish request's metadata can't be understood (rawPayload=maybe)
    ├── EventInvalid               a CloudEvent can't be built from the request
    ├── BulkEventsInvalid          a bulk publish body or entry is malformed
    ├── BulkPublishFailed          some entries of a bulk publish failed
    ├── ComponentError             the backend failed (connection, timeout, unexpected answer...)
    │   ├── ETagMismatch           a concurrency check failed (etag or first-write)
    │   ├── ETagInvalid            the etag cannot be valid for this store (e.g. not an integer)
    │   ├── InvalidOption          an option the store refuses (unknown concurrency, bad ttl, bad query)
    │   ├── NotFoundInStore        the backend has no such item (secrets)
    │   ├── KeyRefused             a key the store refuses where Dapr reports it as the store's failure (lock)
    │   └── BulkError              some items of a bulk operation failed; the others succeeded
    └── OperationFailed            wraps any error of a block operation with the operation's context
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

__all__ = (
    "CLIENT_MISTAKES",
    "AppChannelMissing",
    "BulkError",
    "BulkEventsInvalid",
    "BulkPublishFailed",
    "ComponentError",
    "ComponentNotConfigured",
    "ComponentNotFound",
    "ETagInvalid",
    "ETagMismatch",
    "EventInvalid",
    "FeatureNotSupported",
    "IllegalKey",
    "InvalidOption",
    "InvalidRequest",
    "InvocationFailed",
    "KeyRefused",
    "LayottoError",
    "NotFoundInStore",
    "Operation",
    "OperationFailed",
    "PublishMetadataInvalid",
    "QueryTooComplex",
    "SecretDenied",
    "SpecError",
    "TooManyOperations",
    "TopicForbidden",
    "UnsupportedOperation",
)


class LayottoError(Exception):
    """Root of every error the runtime raises on purpose."""


class SpecError(LayottoError):
    """A resource spec cannot be loaded; the message names the file, the resource and the problem."""


class ComponentNotConfigured(LayottoError):
    """No component of ``block`` is loaded; ``name`` is the one the caller asked for."""

    def __init__(self, block: str, name: str) -> None:
        super().__init__(f"{block} {name} is not configured")
        self.block = block
        self.name = name


class ComponentNotFound(LayottoError):
    """No component of ``block`` is named ``name``."""

    def __init__(self, block: str, name: str) -> None:
        super().__init__(f"{block} {name} is not found")
        self.block = block
        self.name = name


class InvalidRequest(LayottoError):
    """The caller's input is malformed; the message says how."""


class IllegalKey(InvalidRequest):
    """A key (or key prefix) contains the ``||`` separator."""

    def __init__(self, store: str, key: str) -> None:
        super().__init__(f"input key/keyPrefix '{key}' can't contain '||'")
        self.store = store
        self.key = key


class UnsupportedOperation(InvalidRequest):
    """A transaction operation other than ``upsert`` or ``delete``."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"operation type {operation} not supported")
        self.operation = operation


class TooManyOperations(InvalidRequest):
    """A transaction has more operations than the store accepts."""

    def __init__(self, store: str, count: int, limit: int) -> None:
        super().__init__(
            f"the transaction contains {count} operations, which is more than what the state store supports: {limit}"
        )
        self.store = store
        self.count = count
        self.limit = limit


class QueryTooComplex(InvalidRequest):
    """A state query beyond the nesting, clause or sort limits of ``building_blocks.state.query``."""


class FeatureNotSupported(LayottoError):
    """The component named ``store`` does not implement ``feature``."""

    def __init__(self, store: str, feature: str) -> None:
        super().__init__(f"{store} does not support {feature}")
        self.store = store
        self.feature = feature


class TopicForbidden(LayottoError):
    """Topic scoping (``allowedTopics``, ``publishingScopes``...) refuses ``topic`` to this app."""

    def __init__(self, pubsub: str, topic: str, app_id: str) -> None:
        super().__init__(f"topic {topic} is not allowed for app id {app_id}")
        self.pubsub = pubsub
        self.topic = topic


class SecretDenied(LayottoError):
    """``spec.secrets.scopes`` of the Configuration refuse the app secret ``key`` of ``store``."""

    def __init__(self, store: str, key: str) -> None:
        super().__init__(f"access denied by policy to get {_go_quote(key)} from {_go_quote(store)}")
        self.store = store
        self.key = key


def _go_quote(text: str) -> str:
    """Go's ``%q`` of ``text`` for what names hold (quotes, backslashes and control characters escaped)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in escaped)
    return f'"{escaped}"'


class PublishMetadataInvalid(LayottoError):
    def __init__(self, pubsub: str, topic: str, detail: str) -> None:
        super().__init__(f"failed deserializing metadata. Error: {detail}")
        self.pubsub = pubsub
        self.topic = topic


class EventInvalid(LayottoError):
    """The body sent as a CloudEvent is not a JSON object."""

    def __init__(self, pubsub: str, topic: str, detail: str) -> None:
        super().__init__("cannot create cloudevent")
        self.pubsub = pubsub
        self.topic = topic
        self.detail = detail


class BulkEventsInvalid(LayottoError):
    """A bulk publish body (``kind`` = "unmarshal") or one of its entries ("entry", "envelope") is malformed."""

    def __init__(self, pubsub: str, topic: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.pubsub = pubsub
        self.topic = topic
        self.kind = kind


class BulkPublishFailed(LayottoError):
    """``failures`` lists ``(entryId, error)`` of the entries that were not published."""

    def __init__(self, pubsub: str, topic: str, failures: Sequence[tuple[str, str]]) -> None:
        super().__init__(f"{len(failures)} entries failed to publish to topic {topic} in pubsub {pubsub}")
        self.pubsub = pubsub
        self.topic = topic
        self.failures = tuple(failures)


class ComponentError(LayottoError):
    """The backend of a component failed."""


class ETagMismatch(ComponentError):
    """The stored item's etag differs from the one given, or first-write found an existing item."""

    def __init__(self, detail: str = "etag mismatch") -> None:
        super().__init__(detail)


class ETagInvalid(ComponentError):
    """The etag given can never match for this store (e.g. a non-numeric etag on Redis)."""

    def __init__(self, detail: str = "etag is not valid for this store") -> None:
        super().__init__(detail)


class InvalidOption(ComponentError):
    """An option or metadata value the store refuses. Dapr reports it as a store failure (500); it is the
    client's mistake, so the API answers 400 with the operation's own code."""


class NotFoundInStore(ComponentError):
    """The backend has no item of that name."""


class KeyRefused(ComponentError):
    """A key the store can't hold (it contains ``||``) where Dapr reports it as the store's failure, with the
    operation's code (the lock API), not as the caller's mistake (``IllegalKey``, 400)."""


class BulkError(ComponentError):
    """Some items of a bulk operation failed; the others were applied."""

    def __init__(self, failures: Sequence[tuple[str, Exception]]) -> None:
        super().__init__("; ".join(f"{key}: {error}" for key, error in failures))
        self.failures = tuple(failures)

    def first(self, kind: type[Exception]) -> Exception | None:
        """The first failure of the given kind, if any."""
        return next((error for _, error in self.failures if isinstance(error, kind)), None)


class Operation(StrEnum):
    """Block operations whose failures Dapr reports with an operation-specific code and message."""

    STATE_GET = "state.get"
    STATE_SAVE = "state.save"
    STATE_DELETE = "state.delete"
    STATE_BULK_GET = "state.bulk_get"
    STATE_TRANSACTION = "state.transaction"
    STATE_QUERY = "state.query"
    PUBSUB_PUBLISH = "pubsub.publish"
    SECRET_GET = "secret.get"
    SECRET_BULK_GET = "secret.bulk_get"
    CONFIGURATION_GET = "configuration.get"
    CONFIGURATION_SUBSCRIBE = "configuration.subscribe"
    CONFIGURATION_UNSUBSCRIBE = "configuration.unsubscribe"
    CONFIGURATION_SAVE = "configuration.save"
    CONFIGURATION_DELETE = "configuration.delete"
    LOCK_TRY = "lock.try_lock"
    LOCK_UNLOCK = "lock.unlock"
    LOCK_RENEW = "lock.renew"
    SEQUENCER_NEXT_ID = "sequencer.next_id"
    SEQUENCER_SEGMENT = "sequencer.segment"


class AppChannelMissing(LayottoError):
    """The sidecar has no app channel (no ``--app-port``), so it can't ``purpose`` (deliver to the app)."""

    def __init__(self, purpose: str) -> None:
        super().__init__(f"app channel is not initialized. cannot {purpose}")
        self.purpose = purpose


class OperationFailed(LayottoError):
    """``cause`` happened while doing ``operation`` on component ``store`` (for item ``key``)."""

    def __init__(self, operation: Operation, store: str, cause: Exception, key: str = "") -> None:
        super().__init__(str(cause))
        self.operation = operation
        self.store = store
        self.cause = cause
        self.key = key


class InvocationFailed(LayottoError):
    """Invoking ``app_id`` failed before its app answered; ``reason`` is Dapr's ``err`` text."""

    def __init__(self, app_id: str, reason: str) -> None:
        super().__init__(f"failed to invoke, id: {app_id}, err: {reason}")
        self.app_id = app_id
        self.reason = reason


#: The errors that are the caller's own mistake, each answered with a 4xx of its own by ``app/errors.py``:
#: ``Block.operation`` lets them through unwrapped. Every other failure of a component call is reported with
#: the operation's code (``OperationFailed``).
CLIENT_MISTAKES: tuple[type[LayottoError], ...] = (
    InvalidRequest,
    ComponentNotFound,
    TopicForbidden,
    SecretDenied,
    PublishMetadataInvalid,
    EventInvalid,
    BulkEventsInvalid,
)
