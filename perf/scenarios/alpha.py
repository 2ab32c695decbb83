"""Sequencer and lock operations per second on Redis (closed loop: N connections as fast as they go)."""

from __future__ import annotations

from typing import Any

import orjson

from perf.bench import Bench
from perf.environment import Unavailable
from perf.loadgen import HttpSequenceTarget, HttpTarget, RequestBytes, http_request
from perf.payloads import JSON
from perf.scenarios.common import Scenario, probe, require

__all__ = ("SCENARIOS",)


def _store(bench: Bench, block: str) -> tuple[int, str]:
    sidecar = bench.env.sidecar("alpha")
    store = bench.env.alpha_types.get(block)
    if store is None:
        raise Unavailable(f"not available: no {block}.redis component is registered")
    return sidecar.port, store


def _ops(run: dict[str, Any], unit: str) -> dict[str, Any]:
    return {"runs": [run], "added": [], "notes": [], "ops_per_s": run["achieved_rate"], "unit": unit}


async def _sequencer(bench: Bench) -> dict[str, Any]:
    port, store = _store(bench, "sequencer")
    path = f"/v1.0-alpha1/sequencer/{store}"
    body = orjson.dumps({"key": f"perf-seq-{bench.env.run_id}"})
    response = await probe(port, "POST", path, body, **JSON)
    require(response, 200, f"POST {path}")
    if "nextId" not in response.text:
        raise Unavailable(f"not available: POST {path} answered {response.text[:80]}")
    target = HttpTarget("sidecar", port, http_request("POST", path, body, JSON))
    run = await bench.measure("sequencer-redis", "sidecar", target, [bench.env.sidecar("alpha")], closed=True)
    return _ops(run, "ids/s")


async def _lock(bench: Bench) -> dict[str, Any]:
    port, store = _store(bench, "lock")
    run_id = bench.env.run_id

    def pair(worker: int) -> list[RequestBytes]:
        ident = {"resourceId": f"perf-lock-{run_id}-{worker}", "lockOwner": f"perf-owner-{worker}"}
        lock = orjson.dumps({**ident, "expiryInSeconds": 30})
        return [
            http_request("POST", f"/v1.0-alpha1/lock/{store}", lock, JSON),
            http_request("POST", f"/v1.0-alpha1/unlock/{store}", orjson.dumps(ident), JSON),
        ]

    locked, unlocked = pair(-1)
    assert isinstance(locked, bytes) and isinstance(unlocked, bytes)
    for request, what in ((locked, "lock"), (unlocked, "unlock")):
        head, _, body = request.partition(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        response = await probe(port, "POST", path, body, **JSON)
        require(response, 200, f"POST {path}")
        if what == "lock" and '"success":true' not in response.text.replace(" ", ""):
            raise Unavailable(f"not available: {what} answered {response.text[:80]}")
    target = HttpSequenceTarget("sidecar", port, pair)
    run = await bench.measure("lock-redis", "sidecar", target, [bench.env.sidecar("alpha")], closed=True)
    return _ops(run, "lock+unlock pairs/s")


SCENARIOS = [
    Scenario("sequencer-redis", "sequencer next id on Redis (closed loop)", "ops", frozenset({"alpha"}), 1, _sequencer),
    Scenario("lock-redis", "lock + unlock on Redis (closed loop)", "ops", frozenset({"alpha"}), 1, _lock),
]
