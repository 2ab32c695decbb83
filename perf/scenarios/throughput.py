"""Max state-get throughput of one sidecar process against the bare ASGI app doing the same Redis call."""

from __future__ import annotations

from typing import Any

from perf.bench import Bench
from perf.loadgen import HttpTarget, http_request
from perf.scenarios.common import Scenario
from perf.scenarios.state import key_of, seed

__all__ = ("SCENARIOS",)

_CLIENT_BOUND = 0.9  # generator CPU (cores) above which the generator, not the server, may be the limit


async def _run(bench: Bench) -> dict[str, Any]:
    env = bench.env
    sidecar, baseline = env.sidecar("redis"), env.app("baseline")
    port, _ = await seed(bench, "redis")
    key = key_of(bench)
    duration = bench.config.duration
    asgi = await bench.measure(
        "max-throughput",
        "bare ASGI",
        HttpTarget("asgi", baseline.port, http_request("GET", f"/redis/{key}")),
        closed=True,
        duration=duration,
    )
    via = await bench.measure(
        "max-throughput",
        "sidecar",
        HttpTarget("sidecar", port, http_request("GET", f"/v1.0/state/statestore/{key}")),
        [sidecar],
        closed=True,
        duration=duration,
    )
    notes = [
        f"{run['label']}: the generator used {run['client_cpu_cores']:.2f} cores; it may be the limit"
        for run in (asgi, via)
        if run["client_cpu_cores"] > _CLIENT_BOUND
    ]
    ratio = via["achieved_rate"] / asgi["achieved_rate"] if asgi["achieved_rate"] else None
    return {"runs": [asgi, via], "added": [], "notes": notes, "ratio": round(ratio, 3) if ratio else None}


SCENARIOS = [
    Scenario(
        "max-throughput",
        "max state-get throughput on Redis (closed loop)",
        "throughput",
        frozenset({"redis", "baseline"}),
        2,
        _run,
    )
]
