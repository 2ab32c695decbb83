"""The gRPC front against the HTTP front, in the same run: state get (Redis), publish (Redis Streams) and
service invocation (two sidecars), each measured directly, through the sidecar's HTTP API and through its gRPC
API (the Dapr ``DaprStub`` on one asyncio channel, as an SDK holds one). The target: the gRPC front adds no
more latency than the HTTP front (``added`` of the gRPC run against the HTTP run at most 0).

State get and publish also have the floors of both fronts in the same run: the bare ASGI app
(``perf.baseline_app``) and a bare grpcio asyncio server (``perf.grpc_baseline``) making the very same Redis
call, with their CPU per 1000 requests, so a note splits the gRPC front's cost into grpcio's own (bare gRPC
against direct) and ours (sidecar gRPC against bare gRPC).

The gRPC client runs in the load generator's process and costs CPU there that a raw HTTP/1.1 request does
not (a note gives both clients' CPU per 1000 requests); on a 2-core machine it competes with the server, so
the latencies are the gRPC front's plus that client's, an upper bound.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, invoke_pb2, pubsub_pb2, state_pb2
from google.protobuf import any_pb2

from building_blocks._common.redis import execute
from perf.bench import Bench
from perf.clients import RedisState, redis_client
from perf.environment import Unavailable
from perf.loadgen import CallTarget, HttpTarget, http_request
from perf.payloads import JSON, value_bytes
from perf.processes import Process, StartError, free_port, wait_tcp
from perf.scenarios import state
from perf.scenarios.common import Scenario, added, latency_result, probe, require
from perf.scenarios.invoke import _probe as probe_invoke

__all__ = ("SCENARIOS",)

Call = Callable[[int, int], Awaitable[None]]
_BARE = "grpc-baseline"  # its key among the environment's apps


def grpc_port(sidecar: Process) -> int:
    """The port the harness gave the sidecar's gRPC API (``--dapr-grpc-port`` on its command line)."""
    argv = [str(arg) for arg in sidecar.popen.args]  # type: ignore[union-attr]
    try:
        return int(argv[argv.index("--dapr-grpc-port") + 1])
    except (ValueError, IndexError):
        raise Unavailable("the sidecar was started without --dapr-grpc-port") from None


class _Channel:
    """One channel and stub, opened on first use (the load generator's loop), closed by ``close``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.channel: grpc.aio.Channel | None = None
        self.stub: dapr_pb2_grpc.DaprStub | None = None

    def get(self) -> dapr_pb2_grpc.DaprStub:
        if self.stub is None:
            self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
            self.stub = dapr_pb2_grpc.DaprStub(self.channel)
        return self.stub

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()


async def _grpc_run(
    bench: Bench,
    name: str,
    port: int,
    make: Callable[[dapr_pb2_grpc.DaprStub], Call],
    processes: list[Process],
    label: str = "sidecar gRPC",
) -> dict[str, Any]:
    channel = _Channel(port)

    async def call(index: int, scheduled: int) -> None:
        await make(channel.get())(index, scheduled)

    try:
        return await bench.measure(name, label, CallTarget("grpc", call), processes)
    finally:
        await channel.close()


async def _bare_grpc(bench: Bench) -> Process:
    """The bare gRPC server (``perf.grpc_baseline``), started on first use and shared by the scenarios."""
    env = bench.env
    running = env.apps.get(_BARE)
    if running is not None and running.alive:
        return running
    port = free_port()
    argv = [sys.executable, "-m", "perf.grpc_baseline", "--port", str(port)]
    argv += ["--redis", env.redis, "--redis-app-id", env.app_id("redis")]
    process = env.procs.spawn("app-grpc-baseline", argv, port)
    try:
        await wait_tcp(process, 20.0)
    except StartError as exc:
        raise Unavailable(str(exc)) from None
    env.apps[_BARE] = process
    return process


async def _floor_run(
    bench: Bench, name: str, make: Callable[[dapr_pb2_grpc.DaprStub], Call], notes: list[str]
) -> list[dict[str, Any]]:
    try:
        bare = await _bare_grpc(bench)
    except Unavailable as exc:
        notes.append(f"bare gRPC baseline skipped: {exc}")
        return []
    return [await _grpc_run(bench, name, bare.port, make, [bare], "bare gRPC")]


def _floors_note(runs: list[dict[str, Any]]) -> list[str]:
    """The gRPC front's cost split into grpcio's floor and ours, beside the HTTP front's, from the runs."""
    by = {run["label"]: run for run in runs}
    direct = runs[0]

    def lat(label: str) -> str | None:
        run = by.get(label)
        if run is None:
            return None
        diff = added(run, direct)
        return f"{label} +{diff['p50']:.2f}/+{diff['p90']:.2f}"

    def cpu(label: str) -> float | None:
        run = by.get(label)
        value = run.get("sidecar", {}).get("cpu_per_1k_requests") if run else None
        return float(value) if value is not None else None

    def client(label: str) -> str | None:
        run = by.get(label)
        if run is None or not run.get("achieved_rate"):
            return None
        return f"{label} {run['client_cpu_cores'] / run['achieved_rate'] * 1000:.3f}"

    labels = ("bare ASGI", "sidecar HTTP", "bare gRPC", "sidecar gRPC")
    notes = ["added p50/p90 vs " + direct["label"] + " (ms): " + ", ".join(filter(None, map(lat, labels)))]
    shares = [f"{label} {cpu(label):.3f}" for label in labels if cpu(label) is not None]
    for ours, floor in (("sidecar HTTP", "bare ASGI"), ("sidecar gRPC", "bare gRPC")):
        top, bottom = cpu(ours), cpu(floor)
        if top is not None and bottom is not None:
            shares.append(f"ours on {ours.split()[1]} {top - bottom:+.3f}")
    notes.append("server CPU s per 1000 requests: " + ", ".join(shares))
    clients = [text for text in map(client, ("sidecar HTTP", "sidecar gRPC")) if text]
    notes.append("load generator's client CPU s per 1000 requests: " + ", ".join(clients))
    return notes


async def _state_get(bench: Bench) -> dict[str, Any]:
    env, name = bench.env, "grpc-state-get-redis"
    sidecar = env.sidecar("redis")
    port, stored_key = await state.seed(bench, "redis")
    key = state.key_of(bench)
    client = redis_client(env.redis)
    redis_state = RedisState(client)
    notes: list[str] = []

    async def direct(index: int, scheduled: int) -> None:
        if await redis_state.get(stored_key) is None:
            raise LookupError("missing key")

    try:
        runs = [await bench.measure(name, "direct (redis-py)", CallTarget("direct", direct))]
    finally:
        await client.aclose()
    try:
        baseline = env.app("baseline")
    except Unavailable as exc:
        notes.append(f"bare ASGI baseline skipped: {exc}")
    else:
        asgi = HttpTarget("asgi", baseline.port, http_request("GET", f"/redis/{key}"))
        runs.append(await bench.measure(name, "bare ASGI", asgi, [baseline]))
    get = state_pb2.GetStateRequest(store_name="statestore", key=key)

    def make(stub: dapr_pb2_grpc.DaprStub) -> Call:
        async def call(index: int, scheduled: int) -> None:
            if not (await stub.GetState(get)).data:
                raise LookupError("missing key")

        return call

    runs += await _floor_run(bench, name, make, notes)
    request = http_request("GET", f"/v1.0/state/statestore/{key}")
    runs.append(await bench.measure(name, "sidecar HTTP", HttpTarget("sidecar", port, request), [sidecar]))
    runs.append(await _grpc_run(bench, name, grpc_port(sidecar), make, [sidecar]))
    return latency_result(runs, _floors_note(runs) + notes)


async def _publish(bench: Bench) -> dict[str, Any]:
    env, name = bench.env, "grpc-publish-redis"
    sidecar = env.sidecar("redis")
    topic = env.topic(name)
    payload = value_bytes(bench.config.payload)
    path = f"/v1.0/publish/pubsub/{topic}"
    require(await probe(sidecar.port, "POST", path, payload, **JSON), 204, "publishing")
    client = redis_client(env.redis)
    notes: list[str] = []

    async def direct(index: int, scheduled: int) -> None:
        await execute(client, "XADD", topic, "*", "data", payload)

    try:
        runs = [await bench.measure(name, "direct (redis-py XADD)", CallTarget("direct", direct))]
    finally:
        await client.aclose()
    publish = pubsub_pb2.PublishEventRequest(
        pubsub_name="pubsub", topic=topic, data=payload, data_content_type="application/json"
    )

    def make(stub: dapr_pb2_grpc.DaprStub) -> Call:
        async def call(index: int, scheduled: int) -> None:
            await stub.PublishEvent(publish)

        return call

    runs += await _floor_run(bench, name, make, notes)
    request = http_request("POST", path, payload, JSON)
    runs.append(await bench.measure(name, "sidecar HTTP", HttpTarget("sidecar", sidecar.port, request), [sidecar]))
    runs.append(await _grpc_run(bench, name, grpc_port(sidecar), make, [sidecar]))
    return latency_result(runs, _floors_note(runs) + notes)


async def _invoke(bench: Bench) -> dict[str, Any]:
    env, name = bench.env, "grpc-invoke"
    caller, target = env.sidecar("default"), env.sidecar("apps")
    app = env.app("apps")
    body = value_bytes(bench.config.payload)
    path = f"/v1.0/invoke/{env.app_id('apps')}/method/echo"
    await probe_invoke(caller.port, path, body)
    runs = [
        await bench.measure(
            name, "direct (app)", HttpTarget("direct", app.port, http_request("POST", "/echo", body, JSON))
        )
    ]
    via = HttpTarget("sidecar", caller.port, http_request("POST", path, body, JSON))
    runs.append(await bench.measure(name, "two sidecars HTTP", via, [caller, target]))
    message = common_pb2.InvokeRequest(
        method="echo",
        data=any_pb2.Any(value=body),
        content_type="application/json",
        http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.POST),
    )
    invoke = invoke_pb2.InvokeServiceRequest(id=env.app_id("apps"), message=message)

    def make(stub: dapr_pb2_grpc.DaprStub) -> Call:
        async def call(index: int, scheduled: int) -> None:
            if (await stub.InvokeService(invoke)).data.value != body:
                raise ValueError("the echo differs")

        return call

    runs.append(await _grpc_run(bench, name, grpc_port(caller), make, [caller, target]))
    return latency_result(runs)


SCENARIOS = [
    Scenario(
        "grpc-state-get-redis",
        "state get on Redis, HTTP vs gRPC front, both floors",
        "latency",
        frozenset({"redis", "baseline"}),
        5,
        _state_get,
    ),
    Scenario(
        "grpc-publish-redis",
        "publish to Redis Streams, HTTP vs gRPC front, gRPC floor",
        "latency",
        frozenset({"redis"}),
        4,
        _publish,
    ),
    Scenario(
        "grpc-invoke",
        "service invocation 1 KB echo, HTTP vs gRPC front",
        "latency",
        frozenset({"default", "apps"}),
        3,
        _invoke,
    ),
]
