"""Service invocation through two sidecars (caller's, then the target's) against calling the app directly."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from perf.bench import Bench
from perf.environment import Unavailable
from perf.loadgen import HttpTarget, http_request
from perf.payloads import JSON, value_bytes
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
    via = HttpTarget("sidecar", caller.port, http_request("POST", path, body, JSON))
    runs = [await bench.measure("invoke", "direct (app)", direct)]
    runs.append(await bench.measure("invoke", "two sidecars", via, [caller, target]))
    return latency_result(runs)


SCENARIOS = [
    Scenario("invoke", "service invocation, 1 KB POST echo", "latency", frozenset({"default", "apps"}), 2, _run)
]
