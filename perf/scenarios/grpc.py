"""The gRPC front against the HTTP front, in the same run: state get (Redis), publish (Redis Streams) and
service invocation (two sidecars), each measured directly, through the sidecar's HTTP API and through its gRPC
API. The target: the gRPC front adds no more latency than the HTTP front (``added`` of the gRPC run against
the HTTP run at most 0).

State get and publish also have the floors of both fronts in the same run: the bare ASGI app
(``perf.baseline_app``) and a bare grpcio asyncio server (``perf.grpc_baseline``) making the very same Redis
call, with their CPU per 1000 requests, so a note splits the gRPC front's cost into grpcio's own (bare gRPC
against direct) and ours (sidecar gRPC against bare gRPC).

Each gRPC method is first called once through the Dapr SDK's stub (``DaprStub`` on a ``grpc.aio`` channel),
then the runs send it with the raw HTTP/2 client of ``perf.grpc_client`` over one connection (as an SDK
shares one channel): the ``grpc.aio`` client cost the load generator 0.42-0.46 CPU s per 1000 state gets,
the raw one 0.17 (the raw HTTP/1.1 client: 0.13), on the same 2 cores as the servers measured. A note gives
each run's client CPU per 1000 requests.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, invoke_pb2, pubsub_pb2, state_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from building_blocks._common.redis import execute
from perf.bench import Bench
from perf.clients import RedisState, redis_client
from perf.environment import Unavailable
from perf.grpc_baseline import SERVICE
from perf.grpc_client import GrpcTarget
from perf.loadgen import CallTarget, HttpTarget, http_request
from perf.payloads import JSON, value_bytes
from perf.processes import Process, StartError, free_port, wait_tcp
from perf.scenarios import state
from perf.scenarios.common import Scenario, added, latency_result, probe, require
from perf.scenarios.invoke import _probe as probe_invoke

__all__ = ("SCENARIOS",)

_BARE = "grpc-baseline"  # its key among the environment's apps
_CORE_THREADS = ("event_engine", "grpc_")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def grpc_port(sidecar: Process) -> int:
    """The port the harness gave the sidecar's gRPC API (``--dapr-grpc-port`` on its command line)."""
    argv = [str(arg) for arg in sidecar.popen.args]  # type: ignore[union-attr]
    try:
        return int(argv[argv.index("--dapr-grpc-port") + 1])
    except (ValueError, IndexError):
        raise Unavailable("the sidecar was started without --dapr-grpc-port") from None


@dataclass(frozen=True)
class _Unary:
    """One Dapr method's call: checked once through the SDK's stub (a real gRPC client), then sent by the raw
    client of ``perf.grpc_client``; a reply shorter than ``min_reply`` bytes is an error."""

    method: str
    request: Message
    check: Callable[[Any], bool]
    min_reply: int = 0


async def _check(port: int, unary: _Unary) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = await getattr(dapr_pb2_grpc.DaprStub(channel), unary.method)(unary.request, timeout=10)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"not available: {unary.method} answered {exc.code().name} {exc.details()}") from None
    if not unary.check(reply):
        raise Unavailable(f"not available: {unary.method} answered an unexpected reply")


def _thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of ``pid``'s threads by kind: its event loop (the main thread), grpc core's own threads
    (``event_engine``, timers) and the others (grpcio's completion-queue poller, executors)."""
    seconds: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                stat = (task / "stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                kind = "loop" if task.name == str(pid) else "core" if name.startswith(_CORE_THREADS) else "other"
                seconds[kind] = seconds.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / _TICKS
    return seconds


async def _grpc_run(
    bench: Bench, name: str, port: int, unary: _Unary, processes: list[Process], label: str = "sidecar gRPC"
) -> dict[str, Any]:
    await _check(port, unary)
    path = f"/{SERVICE}/{unary.method}"
    target = GrpcTarget("grpc", port, path, unary.request.SerializeToString(), unary.min_reply)
    before = [_thread_cpu(process.pid) for process in processes]  # warm-up included: shares, not totals
    run = await bench.measure(name, label, target, processes)
    spent: dict[str, float] = {}
    for process, start in zip(processes, before, strict=True):
        for kind, value in _thread_cpu(process.pid).items():
            spent[kind] = spent.get(kind, 0.0) + value - start.get(kind, 0.0)
    total = sum(spent.values())
    if total > 0:
        run["thread_cpu_share"] = {kind: round(value / total, 3) for kind, value in sorted(spent.items())}
    return run


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


async def _floor_run(bench: Bench, name: str, unary: _Unary, notes: list[str]) -> list[dict[str, Any]]:
    try:
        bare = await _bare_grpc(bench)
    except Unavailable as exc:
        notes.append(f"bare gRPC baseline skipped: {exc}")
        return []
    return [await _grpc_run(bench, name, bare.port, unary, [bare], "bare gRPC")]


def _floors_note(runs: list[dict[str, Any]]) -> list[str]:
    """The gRPC front's cost split into grpcio's floor and ours, beside the HTTP front's, from the runs."""
    by = {run["label"]: run for run in runs}
    direct = runs[0]

    def lat(label: str) -> str | None:
        run = by.get(label)
        if run is None:
            return None
        diff = added(run, direct)
        return f"{label} {diff['p50']:+.2f}/{diff['p90']:+.2f}"

    def cpu(label: str) -> float | None:
        run = by.get(label)
        value = run.get("sidecar", {}).get("cpu_per_1k_requests") if run else None
        return float(value) if value is not None else None

    def client(label: str) -> str | None:
        run = by.get(label)
        if run is None or not run.get("achieved_rate"):
            return None
        return f"{label} {run['client_cpu_cores'] / run['achieved_rate'] * 1000:.3f}"

    labels = ("bare ASGI", "sidecar HTTP", "two sidecars HTTP", "bare gRPC", "sidecar gRPC")
    notes = ["added p50/p90 vs " + direct["label"] + " (ms): " + ", ".join(filter(None, map(lat, labels)))]
    shares = [f"{label} {cpu(label):.3f}" for label in labels if cpu(label) is not None]
    for ours, floor in (("sidecar HTTP", "bare ASGI"), ("sidecar gRPC", "bare gRPC")):
        top, bottom = cpu(ours), cpu(floor)
        if top is not None and bottom is not None:
            shares.append(f"ours on {ours.split()[1]} {top - bottom:+.3f}")
    notes.append("server CPU s per 1000 requests: " + ", ".join(shares))
    for label in ("bare gRPC", "sidecar gRPC"):
        split = by.get(label, {}).get("thread_cpu_share")
        if split:
            kinds = {"loop": "event loop", "core": "grpc core threads", "other": "grpcio poller and others"}
            parts = ", ".join(f"{kinds[kind]} {100 * share:.0f}%" for kind, share in split.items())
            notes.append(f"{label} CPU by thread: {parts}")
    clients = [text for text in map(client, ("sidecar HTTP", "two sidecars HTTP", "sidecar gRPC")) if text]
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
    unary = _Unary("GetState", get, lambda reply: bool(reply.data), min_reply=bench.config.payload)
    runs += await _floor_run(bench, name, unary, notes)
    request = http_request("GET", f"/v1.0/state/statestore/{key}")
    runs.append(await bench.measure(name, "sidecar HTTP", HttpTarget("sidecar", port, request), [sidecar]))
    runs.append(await _grpc_run(bench, name, grpc_port(sidecar), unary, [sidecar]))
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
    unary = _Unary("PublishEvent", publish, lambda reply: True)
    runs += await _floor_run(bench, name, unary, notes)
    request = http_request("POST", path, payload, JSON)
    runs.append(await bench.measure(name, "sidecar HTTP", HttpTarget("sidecar", sidecar.port, request), [sidecar]))
    runs.append(await _grpc_run(bench, name, grpc_port(sidecar), unary, [sidecar]))
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
    unary = _Unary("InvokeService", invoke, lambda reply: reply.data.value == body, min_reply=len(body))
    runs.append(await _grpc_run(bench, name, grpc_port(caller), unary, [caller, target]))
    return latency_result(runs, _floors_note(runs))


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
