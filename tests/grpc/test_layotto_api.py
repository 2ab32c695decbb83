"""Layotto's ``spec.proto.runtime.v1.Runtime`` service on the sidecar's gRPC port, driven through stubs generated
from this project's definitions (Layotto's SDKs are not on PyPI): its own APIs (sequencer, lock renewal,
configuration save/delete and two-way subscribe, hello) and the Dapr-compatible ones, on the same blocks."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import grpc
import httpx
import pytest

from app.grpc.layotto import appcallback_pb2 as callback_pb
from app.grpc.layotto import runtime_pb2 as pb
from app.grpc.layotto import runtime_pb2_grpc
from tests.grpc.harness import GrpcSidecar, grpc_sidecar


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcSidecar]:
    with grpc_sidecar(tmp_path_factory.mktemp("layotto")) as running:
        yield running


@pytest.fixture
def runtime(sidecar: GrpcSidecar) -> Iterator[runtime_pb2_grpc.RuntimeStub]:
    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel)


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_get_next_id_increases(runtime: runtime_pb2_grpc.RuntimeStub) -> None:
    key = fresh("order")
    strong = pb.SequencerOptions(increment=pb.SequencerOptions.STRONG)
    ids = [
        runtime.GetNextId(pb.GetNextIdRequest(store_name="sequencer", key=key, options=strong)).next_id
        for _ in range(3)
    ]
    assert ids == sorted(ids) and len(set(ids)) == 3
    with pytest.raises(grpc.RpcError) as unknown:
        runtime.GetNextId(pb.GetNextIdRequest(store_name="nosequencer", key=key))
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_lock_with_keep_alive(runtime: runtime_pb2_grpc.RuntimeStub) -> None:
    resource = fresh("res")
    lock = {"store_name": "lockstore", "resource_id": resource}
    assert runtime.TryLock(pb.TryLockRequest(**lock, lock_owner="a", expire=30)).success
    assert not runtime.TryLock(pb.TryLockRequest(**lock, lock_owner="b", expire=30)).success
    renewed = runtime.LockKeepAlive(pb.LockKeepAliveRequest(**lock, lock_owner="a", expire=60))
    assert renewed.status == pb.LockKeepAliveResponse.SUCCESS
    others = runtime.LockKeepAlive(pb.LockKeepAliveRequest(**lock, lock_owner="b", expire=60))
    assert others.status == pb.LockKeepAliveResponse.LOCK_BELONG_TO_OTHERS
    assert runtime.Unlock(pb.UnlockRequest(**lock, lock_owner="a")).status == pb.UnlockResponse.SUCCESS
    assert runtime.Unlock(pb.UnlockRequest(**lock, lock_owner="a")).status == pb.UnlockResponse.LOCK_UNEXIST


def test_configuration_save_get_delete_and_two_way_subscribe(
    runtime: runtime_pb2_grpc.RuntimeStub, sidecar: GrpcSidecar
) -> None:
    key = fresh("color")
    requests: list[pb.SubscribeConfigurationRequest] = [
        pb.SubscribeConfigurationRequest(store_name="configstore", app_id="app", group="g", keys=[key])
    ]
    stream = runtime.SubscribeConfiguration(iter(requests), timeout=60)
    # the subscription is live once the sidecar has taken the request, which the client cannot see: save
    # until the stream brings the update
    items = [pb.ConfigurationItem(key=key, content="blue", metadata={"owner": "me"})]
    received = threading.Event()

    def save_until_received() -> None:
        while not received.is_set():
            runtime.SaveConfiguration(pb.SaveConfigurationRequest(store_name="configstore", items=items))
            received.wait(0.1)

    saver = threading.Thread(target=save_until_received)
    saver.start()
    try:
        update = next(stream)
    finally:
        received.set()
        saver.join()
    while len(update.items) != 1 or update.items[0].content != "blue":
        update = next(stream)
    assert update.store_name == "configstore" and update.app_id == "app"
    assert [(i.key, i.content, i.group) for i in update.items] == [(key, "blue", "g")]
    got = runtime.GetConfiguration(pb.GetConfigurationRequest(store_name="configstore", keys=[key]))
    assert [(i.key, i.content, dict(i.metadata)) for i in got.items] == [(key, "blue", {"owner": "me"})]
    runtime.DeleteConfiguration(pb.DeleteConfigurationRequest(store_name="configstore", keys=[key]))
    assert list(runtime.GetConfiguration(pb.GetConfigurationRequest(store_name="configstore", keys=[key])).items) == []
    deleted = next(stream)
    while deleted.items[0].content:  # saves made before the first update arrived may still be queued
        deleted = next(stream)
    assert [(i.key, i.content) for i in deleted.items] == [(key, "")]
    stream.cancel()
    # Layotto's save is the HTTP front's save: the same block
    assert httpx.get(f"{sidecar.http_url}/v1.0/configuration/configstore", params={"key": key}).status_code == 204


def test_dapr_compatible_apis_share_the_blocks(runtime: runtime_pb2_grpc.RuntimeStub, sidecar: GrpcSidecar) -> None:
    key = fresh("k")
    runtime.SaveState(pb.SaveStateRequest(store_name="statestore", states=[pb.StateItem(key=key, value=b'"v"')]))
    got = runtime.GetState(pb.GetStateRequest(store_name="statestore", key=key))
    assert got.data == b'"v"' and got.etag
    assert httpx.get(f"{sidecar.http_url}/v1.0/state/statestore/{key}").content == b'"v"'
    stale = pb.StateItem(key=key, value=b'"w"', etag=pb.Etag(value="not-the-etag"))
    with pytest.raises(grpc.RpcError) as mismatch:
        runtime.SaveState(pb.SaveStateRequest(store_name="statestore", states=[stale]))
    assert mismatch.value.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.INVALID_ARGUMENT)
    secret = runtime.GetSecret(pb.GetSecretRequest(store_name="secretstore", key="db-password"))
    assert dict(secret.data) == {"db-password": "s3cret"}
    assert runtime.SayHello(pb.SayHelloRequest(service_name="helloworld", name="layotto")).hello == "greetings, layotto"


def test_subscribe_topic_events_with_layottos_messages(runtime: runtime_pb2_grpc.RuntimeStub) -> None:
    import queue

    topic = fresh("events")
    outgoing: queue.Queue[pb.SubscribeTopicEventsRequest | None] = queue.Queue()
    initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name="pubsub", topic=topic)
    outgoing.put(pb.SubscribeTopicEventsRequest(initial_request=initial))

    def requests() -> Iterator[pb.SubscribeTopicEventsRequest]:
        while (request := outgoing.get()) is not None:
            yield request

    stream = runtime.SubscribeTopicEvents(requests(), timeout=60)
    try:
        assert next(stream).HasField("initial_response")  # live: now publish
        runtime.PublishEvent(
            pb.PublishEventRequest(
                pubsub_name="pubsub", topic=topic, data=b'{"a": 1}', data_content_type="application/json"
            )
        )
        event = next(stream).event_message
        assert (event.topic, event.pubsub_name, json.loads(event.data)) == (topic, "pubsub", {"a": 1})
        success = callback_pb.TopicEventResponse(status=callback_pb.TopicEventResponse.SUCCESS)
        outgoing.put(
            pb.SubscribeTopicEventsRequest(
                event_processed=pb.SubscribeTopicEventsRequestProcessed(id=event.id, status=success)
            )
        )
    finally:
        outgoing.put(None)
        stream.cancel()


def test_apis_without_a_block_are_unimplemented_by_name(runtime: runtime_pb2_grpc.RuntimeStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        runtime.InvokeBinding(pb.InvokeBindingRequest(name="b"))
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "bindings API" in (caught.value.details() or "")
