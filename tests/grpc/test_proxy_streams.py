"""Proxying by ``dapr-app-id`` relays every kind of gRPC call, as daprd's proxy does: unary, server-, client-
and bidirectional streaming, through the app's own sidecar (in-process here) and across two sidecars
(processes), with headers, trailers, statuses and details passed through, backpressure and cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2, status_pb2

from app.grpc.hop_tickets import LIFETIME, TicketDesk
from tests.e2e.test_cli import free_port
from tests.grpc.apps.streams_app import SERVICE, Streams, serve, value
from tests.grpc.harness import GrpcSidecar, grpc_sidecar
from tests.sidecar import running_sidecar

String = wrappers_pb2.StringValue
_ENCODE, _DECODE = String.SerializeToString, String.FromString
TIMEOUT = 60  # generous: the machine is shared
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
FLOOD = 800  # messages of 256 KiB: 200 MiB, far more than any flow-control window


async def _read(call: grpc.aio.UnaryStreamCall[String, String] | grpc.aio.StreamStreamCall[String, String]) -> String:
    message = await call.read()
    assert isinstance(message, String), message
    return message


def _path(name: str) -> str:
    return f"/{SERVICE}/{name}"


@dataclass
class Client:
    """The streaming app's methods on a channel to a sidecar, addressed by ``dapr-app-id``."""

    channel: grpc.aio.Channel
    target: str
    token: str = ""

    def metadata(self, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        given = (("dapr-app-id", self.target), *extra)
        return given + ((("dapr-api-token", self.token),) if self.token else ())

    def echo(self) -> grpc.aio.UnaryUnaryMultiCallable[String, String]:
        return self.channel.unary_unary(_path("Echo"), _ENCODE, _DECODE)

    def count(self) -> grpc.aio.UnaryStreamMultiCallable[String, String]:
        return self.channel.unary_stream(_path("Count"), _ENCODE, _DECODE)

    def sum(self) -> grpc.aio.StreamUnaryMultiCallable[String, String]:
        return self.channel.stream_unary(_path("Sum"), _ENCODE, _DECODE)

    def chat(self) -> grpc.aio.StreamStreamMultiCallable[String, String]:
        return self.channel.stream_stream(_path("Chat"), _ENCODE, _DECODE)

    def forever(self) -> grpc.aio.UnaryStreamMultiCallable[String, String]:
        return self.channel.unary_stream(_path("Forever"), _ENCODE, _DECODE)


# -- the checks, shared by one sidecar and two ---------------------------------------------------------------


async def unary_and_metadata(client: Client, caller: str) -> None:
    answer = await client.echo()(
        value("hi"),
        metadata=client.metadata(
            ("x-custom", "1"),
            ("dapr-caller-app-id", "spoofed"),
            ("layotto-grpc-stream", "1"),  # the sidecars' markers, from a client: not taken for theirs
            ("layotto-grpc-method", "/elsewhere.Service/Method"),
            ("traceparent", TRACEPARENT),
        ),
        timeout=TIMEOUT,
    )
    seen = json.loads(answer.value)
    keys = [k for k, _ in seen["metadata"]]
    assert seen["request"] == "hi"
    assert [v for k, v in seen["metadata"] if k == "x-custom"] == ["1"]
    assert [v for k, v in seen["metadata"] if k == "dapr-caller-app-id"] == [caller]  # set by a sidecar
    assert not {"dapr-app-id", "dapr-api-token", "layotto-grpc-ticket", "layotto-grpc-stream"} & set(keys), keys
    assert "layotto-grpc-method" not in keys
    assert [v for k, v in seen["metadata"] if k == "traceparent"] == [TRACEPARENT]  # the caller's trace goes on


async def server_streaming(client: Client) -> None:
    call = client.count()(value("5"), metadata=client.metadata(), timeout=TIMEOUT)
    assert ("app-header", "counting") in list(await call.initial_metadata())
    assert [message.value async for message in call] == ["0", "1", "2", "3", "4"]
    assert await call.code() == grpc.StatusCode.OK
    assert ("app-trailer", "counted") in list(await call.trailing_metadata())


async def client_streaming(client: Client) -> None:
    async def numbers() -> AsyncIterator[String]:
        for number in range(1, 101):
            yield value(str(number))

    answer = await client.sum()(numbers(), metadata=client.metadata(), timeout=TIMEOUT)
    assert answer.value == "5050"


async def bidirectional_ping_pong(client: Client) -> None:
    """Each answer comes back before the next message is sent: nothing waits for the whole stream."""
    call = client.chat()(metadata=client.metadata(), timeout=TIMEOUT)
    for word in ("a", "b", "c"):
        await call.write(value(word))
        assert (await _read(call)).value == "echo:" + word
    await call.done_writing()
    assert await call.read() is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def app_aborts_mid_stream(client: Client) -> None:
    call = client.chat()(metadata=client.metadata(), timeout=TIMEOUT)
    await call.write(value("first"))
    assert (await _read(call)).value == "echo:first"
    await call.write(value("abort"))
    with pytest.raises(grpc.aio.AioRpcError) as aborted:
        await call.read()
    assert aborted.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert aborted.value.details() == "asked to abort"
    trailers = dict(aborted.value.trailing_metadata() or ())
    assert trailers.get("app-trailer") == "aborted"
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "ASKED"


async def caller_cancels(client: Client, cancelled: Cancellations) -> None:
    before = cancelled.count()
    call = client.forever()(value("n"), metadata=client.metadata(), timeout=TIMEOUT)
    assert [(await _read(call)).value for _ in range(3)] == ["n0", "n1", "n2"]
    call.cancel()
    await cancelled.wait(before + 1)  # the app's call was cancelled too


class Cancellations:
    """How many of the app's ``Forever`` calls ended by cancellation (in-process or from its record file)."""

    def __init__(self, streams: Streams | None = None, record: Path | None = None) -> None:
        self.streams, self.record = streams, record

    def count(self) -> int:
        if self.streams is not None:
            return self.streams.cancelled
        assert self.record is not None
        return len(self.record.read_text().splitlines()) if self.record.exists() else 0

    async def wait(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self.count() < count:
            assert time.monotonic() < deadline, f"the app saw {self.count()} cancellations, {count} expected"
            await asyncio.sleep(0.05)


# -- one sidecar: the app's own ------------------------------------------------------------------------------


@dataclass
class Own:
    client: Client
    cancelled: Cancellations
    address: str  # the sidecar's gRPC API


@pytest.fixture
async def own(tmp_path: Path) -> AsyncIterator[Own]:
    streams = Streams()
    port = free_port()
    server = await serve(port, streams)
    try:
        async with (
            running_sidecar(tmp_path, app_id="streamer", grpc=True, app_port=port, app_protocol="grpc") as sidecar,
            grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel,
        ):
            yield Own(Client(channel, "streamer"), Cancellations(streams), f"127.0.0.1:{sidecar.grpc_port}")
    finally:
        await server.stop(None)


async def test_own_app_unary_metadata_and_identity(own: Own) -> None:
    await unary_and_metadata(own.client, caller="streamer")


async def test_own_app_server_streaming(own: Own) -> None:
    await server_streaming(own.client)


async def test_own_app_client_streaming(own: Own) -> None:
    await client_streaming(own.client)


async def test_own_app_bidirectional(own: Own) -> None:
    await bidirectional_ping_pong(own.client)


async def test_own_app_aborts_mid_stream(own: Own) -> None:
    await app_aborts_mid_stream(own.client)


async def test_own_app_sees_the_caller_cancel(own: Own) -> None:
    await caller_cancels(own.client, own.cancelled)


async def test_a_slow_caller_holds_the_app_back(own: Own) -> None:
    """Backpressure: the app produces only as fast as the caller reads (flow control through the sidecar),
    never the whole stream into the sidecar's memory."""
    streams = own.cancelled.streams
    assert streams is not None
    flood: grpc.aio.UnaryStreamMultiCallable[String, String] = own.client.channel.unary_stream(
        _path("Flood"), _ENCODE, _DECODE
    )
    call = flood(value(str(FLOOD)), metadata=own.client.metadata(), timeout=TIMEOUT)
    await _read(call)
    await asyncio.sleep(1)  # the caller reads nothing meanwhile
    held = streams.produced
    assert held < FLOOD // 4, held
    rest = 0
    while await call.read() is not grpc.aio.EOF:  # then everything arrives
        rest += 1
    assert rest == FLOOD - 1


async def test_a_caller_that_vanishes_mid_stream_stops_the_app(own: Own, caplog: pytest.LogCaptureFixture) -> None:
    before = own.cancelled.count()
    async with grpc.aio.insecure_channel(own.address) as channel:
        flood: grpc.aio.UnaryStreamMultiCallable[String, String] = channel.unary_stream(
            _path("Flood"), _ENCODE, _DECODE
        )
        call = flood(value(str(FLOOD)), metadata=own.client.metadata(), timeout=TIMEOUT)
        await _read(call)
    await own.cancelled.wait(before + 1)  # the channel closed under the stream: the app's call ends too
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR and "BUG" in record.message]


async def test_errors_without_target_or_app(tmp_path: Path) -> None:
    """No ``dapr-app-id``: an unknown service (UNIMPLEMENTED); the app down: UNAVAILABLE, as daprd's proxy."""
    port = free_port()  # nothing listens there
    async with (
        running_sidecar(tmp_path, app_id="gone", grpc=True, app_port=port, app_protocol="grpc", wait=False) as sidecar,
        grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel,
    ):
        client = Client(channel, "gone")
        with pytest.raises(grpc.aio.AioRpcError) as untargeted:
            await client.echo()(value("x"), timeout=TIMEOUT)
        assert untargeted.value.code() == grpc.StatusCode.UNIMPLEMENTED
        call = client.count()(value("3"), metadata=client.metadata(), timeout=TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await call.read()
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_api_token_is_required_and_not_passed_on(tmp_path: Path) -> None:
    streams, port = Streams(), free_port()
    server = await serve(port, streams)
    try:
        async with (
            running_sidecar(
                tmp_path, app_id="guarded", grpc=True, app_port=port, app_protocol="grpc", api_token="s3cret"
            ) as sidecar,
            grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel,
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await Client(channel, "guarded").echo()(value("x"), metadata=(("dapr-app-id", "guarded"),))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            await unary_and_metadata(Client(channel, "guarded", token="s3cret"), caller="guarded")
            await server_streaming(Client(channel, "guarded", token="s3cret"))
    finally:
        await server.stop(None)


# -- two sidecars: across the hop ----------------------------------------------------------------------------


@dataclass
class Pair:
    caller: GrpcSidecar  # an app's sidecar that proxies
    callee: GrpcSidecar  # the streaming app's sidecar
    record: Path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    home = tmp_path_factory.mktemp("pair")
    record = home / "cancelled.txt"
    app = [sys.executable, "-m", "tests.grpc.apps.streams_app"]
    env = {"APP_PROTOCOL": "grpc", "RECORD": str(record)}
    with (
        grpc_sidecar(home, "--app-port", str(free_port()), env=env, app_id="streams", command=app) as callee,
        grpc_sidecar(home, app_id="proxying") as caller,
    ):
        yield Pair(caller, callee, record)


@contextlib.asynccontextmanager
async def across(pair: Pair, target: str = "streams") -> AsyncIterator[Client]:
    async with grpc.aio.insecure_channel(pair.caller.grpc_address) as channel:
        yield Client(channel, target)


async def test_two_sidecars_unary_metadata_and_identity(pair: Pair) -> None:
    async with across(pair) as client:
        await unary_and_metadata(client, caller="proxying")


async def test_two_sidecars_server_streaming(pair: Pair) -> None:
    async with across(pair) as client:
        await server_streaming(client)


async def test_two_sidecars_client_streaming(pair: Pair) -> None:
    async with across(pair) as client:
        await client_streaming(client)


async def test_two_sidecars_bidirectional(pair: Pair) -> None:
    async with across(pair) as client:
        await bidirectional_ping_pong(client)


async def test_two_sidecars_app_aborts_mid_stream(pair: Pair) -> None:
    async with across(pair) as client:
        await app_aborts_mid_stream(client)


async def test_two_sidecars_cancellation_reaches_the_app(pair: Pair) -> None:
    async with across(pair) as client:
        await caller_cancels(client, Cancellations(record=pair.record))


async def test_unknown_app_id(pair: Pair) -> None:
    """daprd answers with the resolver's error as it came (UNKNOWN)."""
    async with across(pair, target="nobody") as client:
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await client.echo()(value("x"), metadata=client.metadata(), timeout=TIMEOUT)
        assert unknown.value.code() == grpc.StatusCode.UNKNOWN, unknown.value


async def test_a_ticket_is_needed_and_used_once(pair: Pair) -> None:
    """The callee's gRPC port relays a stream from another sidecar only with a ticket the hop issued."""
    async with grpc.aio.insecure_channel(pair.callee.grpc_address) as channel:
        echo = channel.unary_unary(_path("Echo"), _ENCODE, _DECODE)
        with pytest.raises(grpc.aio.AioRpcError) as forged:
            await echo(value("x"), metadata=(("layotto-grpc-ticket", "made-up"),), timeout=TIMEOUT)
        assert forged.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_invalid_app_id_is_the_directors_error(pair: Pair) -> None:
    async with across(pair, target="a.b.c") as client:
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await client.echo()(value("x"), metadata=client.metadata(), timeout=TIMEOUT)
        assert invalid.value.code() == grpc.StatusCode.UNKNOWN
        assert "invalid app id" in (invalid.value.details() or "")


def test_tickets_are_single_use_bound_to_their_method_and_expire() -> None:
    now = [100.0]
    desk = TicketDesk("127.0.0.1:1", clock=lambda: now[0])
    caller = [(b"dapr-caller-app-id", b"a")]
    first, second, third = (desk.issue("/s/M", caller) for _ in range(3))
    assert len({first, second, third}) == 3
    assert desk.redeem(first, "/s/M") == caller
    assert desk.redeem(first, "/s/M") is None  # used
    assert desk.redeem(second, "/s/Other") is None  # another method: refused, and spent
    assert desk.redeem(second, "/s/M") is None
    now[0] += LIFETIME + 1
    assert desk.redeem(third, "/s/M") is None  # expired


async def test_a_method_the_app_lacks_is_its_own_answer(own: Own, pair: Pair) -> None:
    for client_of in (contextlib.nullcontext(own.client), across(pair)):
        async with client_of as client:
            missing = client.channel.unary_unary(_path("Missing"), _ENCODE, _DECODE)
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await missing(value("x"), metadata=client.metadata(), timeout=TIMEOUT)
            assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- two sidecars over a mutual-TLS hop: unary calls cross the hop whole -------------------------------------


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    from tests.e2e.test_hop_security import make_ca, make_cert, tls_flags

    home = tmp_path_factory.mktemp("tls")
    certs = home / "certs"
    certs.mkdir()
    make_ca(certs, "mesh-ca")
    for name in ("streams", "proxying"):
        make_cert(certs, "mesh-ca", name)
    app = [sys.executable, "-m", "tests.grpc.apps.streams_app"]
    env = {"APP_PROTOCOL": "grpc"}
    with (
        grpc_sidecar(
            home, "--app-port", str(free_port()), *tls_flags(certs, "streams"), env=env, app_id="streams", command=app
        ) as callee,
        grpc_sidecar(home, *tls_flags(certs, "proxying"), app_id="proxying") as caller,
    ):
        yield Pair(caller, callee, home / "unused")


async def test_over_mutual_tls_unary_calls_cross_and_streams_are_refused(tls_pair: Pair) -> None:
    async with across(tls_pair) as client:
        await unary_and_metadata(client, caller="proxying")
        missing = client.channel.unary_unary(_path("Missing"), _ENCODE, _DECODE)
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await missing(value("x"), metadata=client.metadata(), timeout=TIMEOUT)
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert unknown.value.details() == "Method not found!"  # the app's own answer
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            await client_streaming(client)
        assert streamed.value.code() == grpc.StatusCode.UNIMPLEMENTED
        call = client.count()(value("3"), metadata=client.metadata(), timeout=TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError) as answers:
            await _read(call)
        assert answers.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "mutual-TLS" in (answers.value.details() or "")
