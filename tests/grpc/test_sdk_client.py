"""The official Python SDK's ``DaprClient`` in its default gRPC mode against a real sidecar process: the
calls an app makes, the answers Dapr gives, and Dapr's status codes and ErrorInfo reasons for mistakes."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._response import UnlockResponseStatus
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.grpc.harness import GrpcSidecar, grpc_sidecar, point_sdk_at

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # the SDK warns that alpha APIs are alpha


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcSidecar]:
    with grpc_sidecar(tmp_path_factory.mktemp("grpc")) as running:
        yield running


@pytest.fixture
def client(sidecar: GrpcSidecar, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    point_sdk_at(monkeypatch, sidecar)
    with DaprClient() as dapr:
        yield dapr


def reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason in the status details (what ``DaprGrpcError.error_code()`` reads)."""
    return DaprGrpcError(error).error_code()


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- lock -----------------------------------------------------------------------------------------------------


def test_lock_is_exclusive_and_unlock_answers_dapr_statuses(client: DaprClient) -> None:
    resource = fresh("order")
    assert client.try_lock("lockstore", resource, "alice", 30).success
    assert not client.try_lock("lockstore", resource, "bob", 30).success
    assert client.unlock("lockstore", resource, "bob").status == UnlockResponseStatus.lock_belongs_to_others
    assert client.unlock("lockstore", resource, "alice").status == UnlockResponseStatus.success
    assert client.unlock("lockstore", resource, "alice").status == UnlockResponseStatus.lock_does_not_exist


def test_lock_mistakes_are_invalid_argument_with_daprs_messages(client: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as unknown:
        client.try_lock("nolockstore", fresh("r"), "o", 10)
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert unknown.value.details() == "lock store nolockstore not found"
    stub_expiry = _raw_try_lock(client, expiry=0)
    assert stub_expiry.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ExpiryInSeconds is not positive" in (stub_expiry.details() or "")


def _raw_try_lock(client: DaprClient, expiry: int) -> grpc.RpcError:
    """The SDK refuses a non-positive expiry itself; the sidecar must too, for other clients."""
    from dapr.proto.runtime.v1 import lock_pb2

    with pytest.raises(grpc.RpcError) as caught:
        client._stub.TryLockAlpha1(lock_pb2.TryLockRequest(store_name="lockstore", resource_id="r", lock_owner="o"))
    return caught.value


# -- secrets --------------------------------------------------------------------------------------------------


def test_secrets(client: DaprClient) -> None:
    assert client.get_secret("secretstore", "db-password").secret == {"db-password": "s3cret"}
    assert client.get_bulk_secret("secretstore").secrets == {
        "db-password": {"db-password": "s3cret"},
        "api-key": {"api-key": "k3y"},
    }


def test_unknown_secret_store_is_invalid_argument(client: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.get_secret("nosuchstore", "db-password")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "failed finding secret store with key nosuchstore"


# -- configuration --------------------------------------------------------------------------------------------


def _save_configuration(sidecar: GrpcSidecar, items: dict[str, str]) -> None:
    """Layotto's save, over HTTP: subscribers see any write."""
    body = {"items": [{"key": key, "value": value} for key, value in items.items()]}
    response = httpx.post(f"{sidecar.http_url}/v1.0-alpha1/configuration/configstore", json=body)
    assert response.status_code == 204, response.text


def test_configuration_get(client: DaprClient, sidecar: GrpcSidecar) -> None:
    key = fresh("color")
    _save_configuration(sidecar, {key: "blue"})
    items = client.get_configuration("configstore", [key]).items
    assert items[key].value == "blue" and items[key].version == "1"
    assert client.get_configuration("configstore", [fresh("missing")]).items == {}


def test_configuration_subscription_streams_changes_until_unsubscribed(
    client: DaprClient, sidecar: GrpcSidecar
) -> None:
    key = fresh("flag")
    received: list[tuple[str, str]] = []
    arrived = threading.Event()

    def handler(subscription_id: str, response: object) -> None:
        for name, item in response.items.items():  # type: ignore[attr-defined]
            received.append((name, item.value))
        arrived.set()

    subscription_id = client.subscribe_configuration("configstore", [key], handler)
    assert subscription_id  # the stream's first message: the id alone
    _save_configuration(sidecar, {key: "on"})
    assert arrived.wait(30), "no update reached the subscriber"
    assert received == [(key, "on")]
    assert client.unsubscribe_configuration("configstore", subscription_id)
    assert not client.unsubscribe_configuration("configstore", subscription_id)  # unknown now: ok=false


def test_unknown_configuration_store_is_invalid_argument(client: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.get_configuration("nostore", ["a"])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "configuration store nostore not found"
    assert reason(caught.value) == "ERR_CONFIGURATION_STORE_NOT_FOUND"


# -- metadata, health, unimplemented APIs, limits -------------------------------------------------------------


def test_metadata(client: DaprClient, sidecar: GrpcSidecar) -> None:
    key = fresh("attr")
    client.set_metadata(key, "value")
    metadata = client.get_metadata()
    assert metadata.application_id == sidecar.app_id
    assert metadata.extended_metadata[key] == "value"
    assert {c.name for c in metadata.registered_components} >= {"lockstore", "statestore", "secretstore"}
    # the HTTP front sees what the gRPC front set: one runtime
    assert httpx.get(f"{sidecar.http_url}/v1.0/metadata").json()["extended"][key] == "value"


def test_health_service_reports_serving(sidecar: GrpcSidecar) -> None:
    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)  # type: ignore[attr-defined]
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_methods_of_apis_without_a_block_are_unimplemented_naming_the_api(client: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.invoke_binding("mybinding", "create", b"data")
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "bindings API" in (caught.value.details() or "")


def test_a_message_over_max_body_size_is_resource_exhausted(client: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.set_metadata(fresh("big"), "x" * (5 << 20))  # the default --max-body-size is 4 MiB
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- the API token --------------------------------------------------------------------------------------------


def test_api_token_is_required_in_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with grpc_sidecar(tmp_path, env={"DAPR_API_TOKEN": "t0ken"}) as sidecar:
        point_sdk_at(monkeypatch, sidecar, token="t0ken")
        with DaprClient() as dapr:
            assert dapr.get_metadata().application_id == sidecar.app_id
        for token in ("", "wrong"):
            point_sdk_at(monkeypatch, sidecar, token=token)
            with DaprClient() as dapr, pytest.raises(DaprGrpcError) as caught:
                dapr.get_metadata()
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert caught.value.details() == "Unauthorized"
            assert caught.value.error_code() == "Unauthorized"
        # health is exempt, as /v1.0/healthz is
        with grpc.insecure_channel(sidecar.grpc_address) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)  # type: ignore[attr-defined]
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_shutdown_stops_the_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with grpc_sidecar(tmp_path) as sidecar:
        point_sdk_at(monkeypatch, sidecar)
        with DaprClient() as dapr:
            dapr.shutdown()
        assert sidecar.process.wait(timeout=60) == 0


# -- state ----------------------------------------------------------------------------------------------------


def test_state_round_trip_with_etags(client: DaprClient, sidecar: GrpcSidecar) -> None:
    key = fresh("cart")
    missing = client.get_state("statestore", key)
    assert (missing.data, missing.etag) == (b"", "")  # a missing key is an empty answer, not NOT_FOUND
    client.save_state("statestore", key, '{"items": 1}')
    got = client.get_state("statestore", key)
    assert got.data == b'{"items": 1}' and got.etag
    client.save_state("statestore", key, '{"items": 2}', etag=got.etag)
    with pytest.raises(DaprGrpcError) as stale:
        client.save_state("statestore", key, '{"items": 3}', etag=got.etag)
    assert stale.value.code() == grpc.StatusCode.ABORTED
    assert stale.value.error_code() == "ERR_STATE_SAVE"
    assert "possible etag mismatch" in (stale.value.details() or "")
    # the HTTP front reads what the gRPC front wrote: one block
    assert httpx.get(f"{sidecar.http_url}/v1.0/state/statestore/{key}").content == b'{"items": 2}'
    current = client.get_state("statestore", key).etag
    with pytest.raises(DaprGrpcError) as wrong:
        client.delete_state("statestore", key, etag=got.etag)
    assert wrong.value.code() == grpc.StatusCode.ABORTED
    client.delete_state("statestore", key, etag=current)
    assert client.get_state("statestore", key).data == b""


def test_bulk_state_and_transactions(client: DaprClient) -> None:
    from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
    from dapr.clients.grpc._state import StateItem

    a, b, c = fresh("a"), fresh("b"), fresh("c")
    client.save_bulk_state("statestore", [StateItem(a, "1"), StateItem(b, "2")])
    items = client.get_bulk_state("statestore", [a, b, c]).items
    assert [(i.key, i.data) for i in items] == [(a, b"1"), (b, b"2"), (c, b"")]
    client.execute_state_transaction(
        "statestore",
        [
            TransactionalStateOperation(c, "3"),
            TransactionalStateOperation(a, "", operation_type=TransactionOperationType.delete),
        ],
    )
    items = client.get_bulk_state("statestore", [a, b, c]).items
    assert [(i.key, i.data) for i in items] == [(a, b""), (b, b"2"), (c, b"3")]


def test_state_mistakes_get_daprs_codes_and_reasons(client: DaprClient) -> None:
    with pytest.raises(DaprGrpcError) as unknown:
        client.get_state("nostore", "k")
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert unknown.value.details() == "state store nostore is not found"
    assert unknown.value.error_code() == "DAPR_STATE_NOT_FOUND"
    with pytest.raises(DaprGrpcError) as illegal:
        client.save_state("statestore", "a||b", "v")
    assert illegal.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert illegal.value.error_code() == "DAPR_STATE_ILLEGAL_KEY"
    with pytest.raises(DaprGrpcError) as empty:
        client.save_state("statestore", "", "v")
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- publish --------------------------------------------------------------------------------------------------


def test_publish_and_bulk_publish(client: DaprClient) -> None:
    client.publish_event("pubsub", fresh("orders"), '{"id": 1}', data_content_type="application/json")
    response = client.publish_events("pubsub", fresh("orders"), ['{"id": 1}', '{"id": 2}'])
    assert list(response.failed_entries) == []
    with pytest.raises(grpc.RpcError) as unknown:
        client.publish_event("nopubsub", "t", "x")
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert unknown.value.details() == "pubsub nopubsub is not found"


# -- streaming subscription -----------------------------------------------------------------------------------


def test_streaming_subscription_delivers_redelivers_on_retry_and_lists_itself(client: DaprClient) -> None:
    import orjson

    topic = fresh("stream")
    subscription = client.subscribe("pubsub", topic)
    try:
        from dapr.proto.runtime.v1 import metadata_pb2

        metadata = client._stub.GetMetadata(metadata_pb2.GetMetadataRequest())
        assert ("pubsub", topic, metadata_pb2.STREAMING) in [
            (s.pubsub_name, s.topic, s.type) for s in metadata.subscriptions
        ]
        client.publish_event("pubsub", topic, '{"n": 1}', data_content_type="application/json")
        first = subscription.next_message()
        assert first.data() == {"n": 1} and orjson.loads(first.raw_data()) == {"n": 1}
        assert (first.topic(), first.pubsub_name(), first.data_content_type()) == (topic, "pubsub", "application/json")
        subscription.respond_retry(first)
        again = subscription.next_message()  # RETRY: the same message again, until SUCCESS
        assert again.id() == first.id()
        subscription.respond_success(again)
        client.publish_event("pubsub", topic, '{"n": 2}', data_content_type="application/json")
        second = subscription.next_message()
        assert second.data() == {"n": 2}
        subscription.respond_success(second)
    finally:
        subscription.close()


def test_streaming_subscription_needs_an_existing_pubsub(client: DaprClient) -> None:
    with pytest.raises(Exception, match="pubsub nopubsub is not found"):
        client.subscribe("nopubsub", fresh("t"))


# -- hostile input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["/dapr.proto.runtime.v1.Dapr/GetState", "/spec.proto.runtime.v1.Runtime/GetNextId"])
def test_bytes_that_are_not_the_message_are_invalid_argument(sidecar: GrpcSidecar, method: str) -> None:
    """grpcio would answer INTERNAL for a request it cannot decode; it is the client's mistake."""
    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\xff\xff\xff\xff", timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("malformed request: ")


def test_a_malformed_message_on_a_stream_is_invalid_argument(sidecar: GrpcSidecar) -> None:
    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        call: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
            "/dapr.proto.runtime.v1.Dapr/SubscribeTopicEventsAlpha1"
        )
        with pytest.raises(grpc.RpcError) as caught:
            list(call(iter([b"\xff\xff\xff"]), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_w3c_trace_context_in_metadata_reaches_the_event(client: DaprClient) -> None:
    from dapr.proto.runtime.v1 import pubsub_pb2

    topic = fresh("traced")
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    subscription = client.subscribe("pubsub", topic)
    try:
        request = pubsub_pb2.PublishEventRequest(
            pubsub_name="pubsub", topic=topic, data=b'{"n": 1}', data_content_type="application/json"
        )
        client._stub.PublishEvent(request, metadata=[("traceparent", traceparent), ("tracestate", "k=v")])
        message = subscription.next_message()
        extensions = message.extensions()
        assert extensions["traceparent"] == traceparent and extensions["traceid"] == traceparent
        assert extensions["tracestate"] == "k=v"
        subscription.respond_success(message)
    finally:
        subscription.close()


# -- the SDK's asyncio client ---------------------------------------------------------------------------------


async def test_the_asyncio_client(sidecar: GrpcSidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    from dapr.aio.clients import DaprClient as AsyncDaprClient

    point_sdk_at(monkeypatch, sidecar)
    key = fresh("aio")
    async with AsyncDaprClient() as dapr:
        await dapr.save_state("statestore", key, '{"aio": true}')
        got = await dapr.get_state("statestore", key)
        assert got.data == b'{"aio": true}' and got.etag
        await dapr.publish_event("pubsub", fresh("aio"), '{"n": 1}', data_content_type="application/json")
        assert (await dapr.get_secret("secretstore", "api-key")).secret == {"api-key": "k3y"}
        assert (await dapr.get_metadata()).application_id == sidecar.app_id
