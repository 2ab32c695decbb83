"""The ``Runtime`` servicer: Layotto's API on the same blocks as Dapr's.

Where Layotto's messages are Dapr's on the wire (same field numbers and types: state, publish, secrets,
invocation, TryLock/Unlock), a call is re-read as Dapr's message and served by the Dapr servicer's method:
one implementation, two front doors. Layotto's own APIs are served here: ``GetNextId`` (sequencer),
``LockKeepAlive`` (lock renewal), configuration with items as a list and Save/Delete, the two-way
``SubscribeConfiguration`` (each request on the stream adds a subscription; updates come back as they
happen), ``SubscribeTopicEvents`` (Dapr's streaming subscription, with Layotto's event message, whose
field 10 is a string map where Dapr has a Struct) and ``SayHello``. Files and bindings answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
from dapr.proto.runtime.v1 import invoke_pb2, lock_pb2, secret_pb2, state_pb2
from dapr.proto.runtime.v1 import pubsub_pb2 as dapr_pubsub
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from app.grpc.dapr.base import Context
from app.grpc.dapr.service import DaprService
from app.grpc.layotto import appcallback_pb2 as callback_pb
from app.grpc.layotto import runtime_pb2 as pb
from app.grpc.layotto import runtime_pb2_grpc
from app.grpc.registration import handler
from building_blocks.configuration.base import (
    ConfigurationItem,
    ConfigurationUpdate,
    DeleteRequest,
    GetRequest,
    SaveItem,
    SaveRequest,
    SubscribeRequest,
)
from building_blocks.configuration.block import Delivery
from building_blocks.errors import OperationFailed
from building_blocks.lock.base import RenewRequest
from building_blocks.sequencer.base import Increment, NextIdRequest

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("LayottoService", "serve")

#: What Layotto's hello component says before the caller's name.
HELLO = "greetings"


def _as(kind: type[Any], message: Message) -> Any:
    """``message`` re-read as ``kind``: the two are the same on the wire."""
    return kind.FromString(message.SerializeToString())


def _via_dapr(name: str, request_kind: type[Message], response_kind: type[Message]) -> Callable[..., Any]:
    async def method(self: LayottoService, request: Message, context: Context) -> Any:
        answer = await getattr(self.dapr, name)(_as(request_kind, request), context)
        return _as(response_kind, answer)

    method.__name__ = name
    return method


def _items(items: dict[str, ConfigurationItem | None] | Any, group: str, label: str) -> list[pb.ConfigurationItem]:
    return [
        pb.ConfigurationItem(
            key=key,
            content=item.value if item is not None else "",
            group=group,
            label=label,
            metadata=dict(item.metadata) if item is not None else {},
        )
        for key, item in items.items()
    ]


def _event(event: Any) -> callback_pb.TopicEventRequest:
    """Dapr's topic event as Layotto's (no path, no extensions: Layotto's field 10 is a string map)."""
    return callback_pb.TopicEventRequest(
        id=event.id,
        source=event.source,
        type=event.type,
        spec_version=event.spec_version,
        data_content_type=event.data_content_type,
        data=event.data,
        topic=event.topic,
        pubsub_name=event.pubsub_name,
    )


Updates = asyncio.Queue[pb.SubscribeConfigurationResponse | BaseException | None]


def _to_stream(updates: Updates, request: pb.SubscribeConfigurationRequest) -> Delivery:
    """A subscription's delivery: its updates onto the stream, labelled as the request was."""
    app_id, group, label = request.app_id, request.group, request.label

    async def deliver(store: str, update: ConfigurationUpdate) -> None:
        items = _items(update.items, group, label)
        updates.put_nowait(pb.SubscribeConfigurationResponse(store_name=store, app_id=app_id, items=items))

    return deliver


class LayottoService(runtime_pb2_grpc.RuntimeServicer):
    def __init__(self, runtime: Runtime, dapr: DaprService) -> None:
        self.runtime = runtime
        self.dapr = dapr

    async def SayHello(self, request: pb.SayHelloRequest, context: Context) -> pb.SayHelloResponse:
        hello = f"{HELLO}, {request.name}" if request.name else HELLO
        answer = pb.SayHelloResponse(hello=hello)
        if request.HasField("data"):
            answer.data.CopyFrom(request.data)
        return answer

    InvokeService = _via_dapr("InvokeService", invoke_pb2.InvokeServiceRequest, pb.InvokeResponse)
    GetState = _via_dapr("GetState", state_pb2.GetStateRequest, pb.GetStateResponse)
    GetBulkState = _via_dapr("GetBulkState", state_pb2.GetBulkStateRequest, pb.GetBulkStateResponse)
    SaveState = _via_dapr("SaveState", state_pb2.SaveStateRequest, empty_pb2.Empty)
    DeleteState = _via_dapr("DeleteState", state_pb2.DeleteStateRequest, empty_pb2.Empty)
    DeleteBulkState = _via_dapr("DeleteBulkState", state_pb2.DeleteBulkStateRequest, empty_pb2.Empty)
    ExecuteStateTransaction = _via_dapr(
        "ExecuteStateTransaction", state_pb2.ExecuteStateTransactionRequest, empty_pb2.Empty
    )
    PublishEvent = _via_dapr("PublishEvent", dapr_pubsub.PublishEventRequest, empty_pb2.Empty)
    GetSecret = _via_dapr("GetSecret", secret_pb2.GetSecretRequest, pb.GetSecretResponse)
    GetBulkSecret = _via_dapr("GetBulkSecret", secret_pb2.GetBulkSecretRequest, pb.GetBulkSecretResponse)
    TryLock = _via_dapr("TryLockAlpha1", lock_pb2.TryLockRequest, pb.TryLockResponse)
    Unlock = _via_dapr("UnlockAlpha1", lock_pb2.UnlockRequest, pb.UnlockResponse)

    async def LockKeepAlive(self, request: pb.LockKeepAliveRequest, context: Context) -> pb.LockKeepAliveResponse:
        renewal = RenewRequest(request.resource_id, request.lock_owner, request.expire)
        status = await self.runtime.lock.renew(request.store_name, renewal)
        return pb.LockKeepAliveResponse(status=int(status))  # type: ignore[arg-type]

    async def GetNextId(self, request: pb.GetNextIdRequest, context: Context) -> pb.GetNextIdResponse:
        strong = request.HasField("options") and request.options.increment == pb.SequencerOptions.STRONG
        typed = NextIdRequest(request.key, Increment.STRONG if strong else Increment.WEAK, dict(request.metadata))
        return pb.GetNextIdResponse(next_id=await self.runtime.sequencer.next_id(request.store_name, typed))

    async def GetConfiguration(
        self, request: pb.GetConfigurationRequest, context: Context
    ) -> pb.GetConfigurationResponse:
        typed = GetRequest(tuple(request.keys), dict(request.metadata))
        items = await self.runtime.configuration.get(request.store_name, typed)
        return pb.GetConfigurationResponse(items=_items(items, request.group, request.label))

    async def SaveConfiguration(self, request: pb.SaveConfigurationRequest, context: Context) -> empty_pb2.Empty:
        block = self.runtime.configuration
        block.check_store(request.store_name)
        items = [SaveItem(item.key, item.content, dict(item.metadata)) for item in request.items]
        await block.save(request.store_name, SaveRequest(items, dict(request.metadata)))
        return empty_pb2.Empty()

    async def DeleteConfiguration(self, request: pb.DeleteConfigurationRequest, context: Context) -> empty_pb2.Empty:
        typed = DeleteRequest(tuple(request.keys), dict(request.metadata))
        await self.runtime.configuration.delete(request.store_name, typed)
        return empty_pb2.Empty()

    async def SubscribeConfiguration(
        self, requests: AsyncIterator[pb.SubscribeConfigurationRequest], context: Context
    ) -> AsyncIterator[pb.SubscribeConfigurationResponse]:
        """Each request subscribes; the stream carries every update of every subscription it made."""
        updates: Updates = asyncio.Queue()  # None would end the stream: nothing sends it today
        block = self.runtime.configuration
        made: list[tuple[str, str]] = []

        async def subscribe_each() -> None:
            try:
                async for request in requests:
                    typed = SubscribeRequest(tuple(request.keys), dict(request.metadata))
                    delivery = _to_stream(updates, request)
                    made.append((request.store_name, await block.subscribe(request.store_name, typed, delivery)))
            except Exception as exc:
                updates.put_nowait(exc)
            # the client closing its side ends no subscription: the stream lasts until the client cancels it

        reader = asyncio.get_running_loop().create_task(subscribe_each())
        try:
            while True:
                update = await updates.get()
                if update is None:
                    return
                if isinstance(update, BaseException):
                    raise update
                yield update
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            for store, subscription_id in made:
                with contextlib.suppress(OperationFailed):
                    await block.unsubscribe(store, subscription_id)

    async def SubscribeTopicEvents(
        self, requests: AsyncIterator[pb.SubscribeTopicEventsRequest], context: Context
    ) -> AsyncIterator[pb.SubscribeTopicEventsResponse]:
        async def as_dapr() -> AsyncIterator[dapr_pubsub.SubscribeTopicEventsRequestAlpha1]:
            async for request in requests:
                yield _as(dapr_pubsub.SubscribeTopicEventsRequestAlpha1, request)

        async for answer in self.dapr.SubscribeTopicEventsAlpha1(as_dapr(), context):
            if answer.HasField("event_message"):
                yield pb.SubscribeTopicEventsResponse(event_message=_event(answer.event_message))
            else:
                yield pb.SubscribeTopicEventsResponse(initial_response=pb.SubscribeTopicEventsResponseInitial())


def _unimplemented(method: str, api: str) -> Any:
    async def refuse(self: LayottoService, request: Any, context: Context) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"{method}: the {api} API is not implemented by this sidecar"
        )

    refuse.__name__ = method
    return refuse


for _method, _api in (
    ("GetFile", "file"),
    ("PutFile", "file"),
    ("ListFile", "file"),
    ("DelFile", "file"),
    ("GetFileMeta", "file"),
    ("InvokeBinding", "bindings"),
):
    setattr(LayottoService, _method, _unimplemented(_method, _api))


def serve(runtime: Runtime, dapr: DaprService) -> grpc.GenericRpcHandler:
    """The handler serving Layotto's ``Runtime`` service beside ``dapr``'s."""
    return handler(LayottoService(runtime, dapr), pb.DESCRIPTOR.services_by_name["Runtime"], runtime)
