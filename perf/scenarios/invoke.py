"""Service invocation through two sidecars (caller's, then the target's) against calling the app directly and
against the floor: two chained raw relays (``perf.floor``) in front of the same app, the cost of two HTTP hops
in Python with nothing done per request. The floor's CPU per request per hop and its added latency are set
next to the sidecars' (sidecar/floor ratios)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from perf.bench import Bench
from perf.environment import Unavailable
from perf.loadgen import HttpTarget, http_request
from perf.payloads import JSON, value_bytes
from perf.processes import Process, free_port, wait_tcp
from perf.scenarios.common import Scenario, describe, latency_result, probe

__all__ = ("SCENARIOS",)

_RESOLVE_WAIT = 10.0  # seconds a 5xx may last while the target registers with name resolution


async def _probe(port: int, path: str, body: bytes) -> None:
    """Unavailable unless the echo comes back; retries 500s for a while (name resolution may lag)."""
    deadline = time.monotonic() + _RESOLVE_WAIT
    while True:
        response = await probe(port, "POST", path, body, **JSON)
        if response.status_code == 200 and response.content == body:
            return
        if response.status_code != 500 or time.monotonic() > deadline:
            raise Unavailable(f"not available: POST {path} answered {describe(response)}")
        await asyncio.sleep(0.25)


async def _run(bench: Bench) -> dict[str, Any]:
    env = bench.env
    caller, target = env.sidecar("default"), env.sidecar("apps")
    app = env.app("apps")
    body = value_bytes(bench.config.payload)
    path = f"/v1.0/invoke/{env.app_id('apps')}/method/echo"
    await _probe(caller.port, path, body)
    direct = HttpTarget("direct", app.port, http_request("POST", "/echo", body, JSON))
    relays = await _floor(bench, app.port)
    floor = HttpTarget("floor", relays[0].port, http_request("POST", "/echo", body, JSON))
    via = HttpTarget("sidecar", caller.port, http_request("POST", path, body, JSON))
    runs = [await bench.measure("invoke", "direct (app)", direct)]
    runs.append(await bench.measure("invoke", "floor (2 raw relays)", floor, relays))
    runs.append(await bench.measure("invoke", "two sidecars", via, [caller, target]))
    return latency_result(runs, _ratios(runs[1], runs[2], runs[0]))


async def _floor(bench: Bench, app_port: int) -> list[Process]:
    """The two raw relays, the caller's first; the harness stops them with every process it started."""
    procs = bench.env.procs
    far_port, near_port = free_port(), free_port()
    relay = [sys.executable, "-m", "perf.floor", "relay"]
    far = procs.spawn("relay-2", [*relay, "--port", str(far_port), "--upstream", str(app_port)], far_port)
    near = procs.spawn("relay-1", [*relay, "--port", str(near_port), "--upstream", str(far_port)], near_port)
    for process in (far, near):
        await wait_tcp(process, 20.0)
    return [near, far]


def _ratios(floor: dict[str, Any], sidecars: dict[str, Any], direct: dict[str, Any]) -> list[str]:
    """Sidecar/floor: CPU per request per hop, and added p50."""
    cpu_floor = floor.get("sidecar", {}).get("cpu_per_1k_requests")
    cpu_sidecars = sidecars.get("sidecar", {}).get("cpu_per_1k_requests")
    p50 = direct["latency_ms"]["p50"]
    added_floor = floor["latency_ms"]["p50"] - p50
    added_sidecars = sidecars["latency_ms"]["p50"] - p50
    notes = []
    if cpu_floor and cpu_sidecars:
        notes.append(
            f"sidecar / floor CPU per request per hop: x{cpu_sidecars / cpu_floor:.2f} "
            f"({cpu_sidecars / 2:.3f} vs {cpu_floor / 2:.3f} CPU s per 1000 requests)"
        )
    if added_floor > 0:
        notes.append(
            f"sidecar / floor added p50: x{added_sidecars / added_floor:.2f} "
            f"(+{added_sidecars:.2f} vs +{added_floor:.2f} ms for two hops)"
        )
    return notes


SCENARIOS = [
    Scenario("invoke", "service invocation, 1 KB POST echo", "latency", frozenset({"default", "apps"}), 3, _run)
]
