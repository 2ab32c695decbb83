"""``Block.operation``'s one rule: the caller's mistakes pass through, every other failure of a component call
is ``OperationFailed`` with the operation, store and key, and a failure that is not a domain error is logged."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.errors import _RENDERERS, render_error
from building_blocks.block import Block, ComponentCall, LayerOrder
from building_blocks.component import Component, ComponentContext, Metadata
from building_blocks.errors import (
    CLIENT_MISTAKES,
    AppChannelMissing,
    BulkEventsInvalid,
    BulkPublishFailed,
    ComponentError,
    ComponentNotConfigured,
    ComponentNotFound,
    ETagMismatch,
    EventInvalid,
    FeatureNotSupported,
    IllegalKey,
    InvalidOption,
    InvalidRequest,
    InvocationFailed,
    KeyRefused,
    LayottoError,
    Operation,
    OperationFailed,
    PublishMetadataInvalid,
    QueryTooComplex,
    SecretDenied,
    TooManyOperations,
    TopicForbidden,
    UnsupportedOperation,
)
from building_blocks.lock.base import TryLockRequest
from building_blocks.lock.block import LockBlock
from building_blocks.lock.memory import InMemoryLockStore
from building_blocks.pubsub.block import PubSubBlock
from building_blocks.pubsub.memory import InMemoryPubSub
from building_blocks.state.block import StateBlock
from building_blocks.state.memory import InMemoryStateStore

LOGGER = "building_blocks.block"


class _Block(Block[Component, None]):
    kind = "test store"
    type_prefix = "test"
    component_base = Component


async def _raise(error: Exception) -> None:
    raise error


async def _operation(error: Exception) -> None:
    block = _Block(ComponentContext())
    await block.operation(Operation.STATE_SAVE, "store", "key", _raise, error)


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequest("bad body"),
        IllegalKey("store", "a||b"),
        QueryTooComplex("too deep"),
        ComponentNotFound("state store", "nope"),
        TopicForbidden("pubsub", "topic", "app"),
        OperationFailed(Operation.STATE_GET, "other", ComponentError("down"), "k"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_client_mistake_passes_through_unwrapped(error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(type(error)) as raised:
        await _operation(error)
    assert raised.value is error
    assert not caplog.records


@pytest.mark.parametrize(
    "error",
    [
        ComponentError("connection refused"),
        ETagMismatch(),
        InvalidOption("unrecognized concurrency model 'x'"),
        KeyRefused("input key/keyPrefix 'a||b' can't contain '||'"),
        FeatureNotSupported("store", "transactions"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_component_failure_is_wrapped_with_its_context(
    error: LayottoError, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(OperationFailed) as raised:
        await _operation(error)
    failed = raised.value
    assert (failed.operation, failed.store, failed.key) == (Operation.STATE_SAVE, "store", "key")
    assert failed.cause is error and failed.__cause__ is error
    assert not caplog.records  # a domain error is expected, not a bug


async def test_an_unexpected_exception_is_logged_once_and_wrapped(caplog: pytest.LogCaptureFixture) -> None:
    error = KeyError("driver bug")
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(OperationFailed) as raised:
        await _operation(error)
    assert raised.value.cause is error and raised.value.store == "store"
    (record,) = caplog.records
    assert record.getMessage() == "state.save on test store store failed unexpectedly"
    assert record.exc_info is not None and record.exc_info[1] is error


async def test_the_result_is_returned() -> None:
    async def double(value: int) -> int:
        return value * 2

    block = _Block(ComponentContext())
    assert await block.operation(Operation.STATE_GET, "store", "k", double, 21) == 42


# -- the blocks' hot paths apply the same rule inline ----------------------------------------------------------


class _BrokenState(InMemoryStateStore):
    async def get(self, request: Any) -> Any:
        raise RuntimeError("boom")


class _BrokenPubSub(InMemoryPubSub):
    async def publish(self, request: Any) -> None:
        raise ComponentError("broker down")


async def test_state_get_wraps_a_store_failure(caplog: pytest.LogCaptureFixture) -> None:
    block = StateBlock(ComponentContext(app_id="app"))
    block.add(_BrokenState("s", Metadata({})), "test")
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(OperationFailed) as raised:
        await block.get("s", "k")
    assert (raised.value.operation, raised.value.store, raised.value.key) == (Operation.STATE_GET, "s", "k")
    assert len(caplog.records) == 1
    with pytest.raises(IllegalKey):  # the caller's key: not wrapped
        await block.get("s", "a||b")


async def test_publish_wraps_a_broker_failure_with_the_topic() -> None:
    block = PubSubBlock(ComponentContext(app_id="app"))
    block.add(_BrokenPubSub("p", Metadata({})), "test")
    with pytest.raises(OperationFailed) as raised:
        await block.publish("p", "orders", b"{}", "application/json", {}, {})
    assert (raised.value.operation, raised.value.store, raised.value.key) == (Operation.PUBSUB_PUBLISH, "p", "orders")
    assert isinstance(raised.value.cause, ComponentError)


async def test_a_lock_resource_id_with_the_separator_is_the_stores_failure() -> None:
    """Dapr answers ERR_TRY_LOCK (500) here, not a malformed request: the rule says so by the error's type."""
    block = LockBlock(ComponentContext(app_id="app"))
    store = InMemoryLockStore("locks", Metadata({}))
    await store.init()
    block.add(store, "test")
    with pytest.raises(OperationFailed) as raised:
        await block.try_lock("locks", TryLockRequest("a||b", "o", 5))
    assert isinstance(raised.value.cause, KeyRefused)
    assert (raised.value.operation, raised.value.key) == (Operation.LOCK_TRY, "a||b")


# -- the rule agrees with the error table ----------------------------------------------------------------------

# One instance of every domain error the table renders on its own (OperationFailed is the wrapper itself).
SAMPLES: list[LayottoError] = [
    AppChannelMissing("deliver"),
    ComponentNotConfigured("state store", "s"),
    ComponentNotFound("state store", "s"),
    IllegalKey("s", "a||b"),
    TooManyOperations("s", 3, 2),
    UnsupportedOperation("merge"),
    InvalidRequest("bad"),
    InvocationFailed("app", "unreachable"),
    FeatureNotSupported("s", "transactions"),
    TopicForbidden("p", "t", "app"),
    SecretDenied("vault", "key"),
    PublishMetadataInvalid("p", "t", "bad"),
    EventInvalid("p", "t", "bad"),
    BulkEventsInvalid("p", "t", "unmarshal", "bad"),
    BulkPublishFailed("p", "t", [("1", "down")]),
]


def test_the_samples_cover_every_domain_error_of_the_table() -> None:
    table = {kind for kind in _RENDERERS if issubclass(kind, LayottoError) and kind is not OperationFailed}
    assert table == {type(sample) for sample in SAMPLES}


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_client_mistakes_are_exactly_the_errors_answered_with_a_4xx(error: LayottoError) -> None:
    status = render_error(error, "app").status_code
    assert isinstance(error, CLIENT_MISTAKES) == (400 <= status < 500), status


# -- layers: what resiliency, metrics and tracing wrap every component call with ----------------------------


class _Recorder:
    """A layer that records what it sees and can retry once."""

    def __init__(self, order: int, seen: list[str], retries: int = 0) -> None:
        self.order = order
        self.seen = seen
        self.retries = retries

    async def __call__(self, call: ComponentCall, proceed: Callable[[], Awaitable[Any]]) -> Any:
        self.seen.append(f"{self.order}:{call.operation}:{call.store}:{call.key}")
        for _ in range(self.retries):
            try:
                return await proceed()
            except ComponentError:
                self.seen.append(f"{self.order}:retry")
        return await proceed()


async def test_layers_run_outermost_first_around_every_call() -> None:
    seen: list[str] = []
    attempts: list[int] = []

    async def flaky(value: int) -> int:
        attempts.append(value)
        if len(attempts) == 1:
            raise ComponentError("down once")
        return value

    block = _Block(ComponentContext())
    block.add_layer(_Recorder(LayerOrder.RESILIENCY, seen, retries=1))
    block.add_layer(_Recorder(LayerOrder.TRACING, seen))
    assert await block.operation(Operation.STATE_SAVE, "store", "k", flaky, 7) == 7
    assert attempts == [7, 7]  # the layer called the component again with the same arguments
    assert seen == ["10:state.save:store:k", "30:state.save:store:k", "30:retry"]


async def test_a_failure_through_layers_is_still_reported_by_the_one_rule() -> None:
    seen: list[str] = []
    block = _Block(ComponentContext())
    block.add_layer(_Recorder(LayerOrder.METRICS, seen))
    with pytest.raises(OperationFailed) as raised:
        await block.operation(Operation.STATE_SAVE, "store", "k", _raise, ComponentError("down"))
    assert raised.value.store == "store" and seen == ["20:state.save:store:k"]
    with pytest.raises(InvalidRequest):
        await block.operation(Operation.STATE_SAVE, "store", "k", _raise, InvalidRequest("bad"))


async def test_the_inline_hot_paths_go_through_layers_when_there_are_some() -> None:
    seen: list[str] = []
    state = StateBlock(ComponentContext(app_id="app"))
    state.add(InMemoryStateStore("s", Metadata({})), "test")
    await state.components["s"].init()
    state.add_layer(_Recorder(LayerOrder.METRICS, seen))
    assert await state.get("s", "missing") is None
    pubsub = PubSubBlock(ComponentContext(app_id="app"))
    pubsub.add(InMemoryPubSub("p", Metadata({})), "test")
    await pubsub.components["p"].init()
    pubsub.add_layer(_Recorder(LayerOrder.METRICS, seen))
    await pubsub.publish("p", "t", b"{}", "application/json", {}, {})
    assert seen == ["20:state.get:s:missing", "20:pubsub.publish:p:t"]
