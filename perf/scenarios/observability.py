"""What observability costs on the hot path: state get on Redis through sidecars that differ only in it.

Every variant is its own sidecar process on the same Redis key: metrics and tracing off (the baseline),
metrics on (the default), tracing configured with ``samplingRate: "0"``, and tracing with ``samplingRate:
"1"`` exporting every span to Zipkin (a sink that accepts and drops them). The variants take turns over
``ROUNDS`` short runs each (the run's duration split between them), and each is shown by its run of median
p90: over loopback a busy machine moves p90 by milliseconds between identical runs, so a single run in
sequence says more about the machine than about the variant. ``python -m perf.observability_cost``
measures the same costs in-process, without the loopback.
"""

from __future__ import annotations

from typing import Any

import orjson

from perf.bench import Bench
from perf.environment import APP_IDS
from perf.loadgen import HttpTarget, http_request
from perf.payloads import JSON, value
from perf.processes import Process, free_port
from perf.scenarios.common import Scenario, added, probe, require

__all__ = ("SCENARIOS",)

_OFF = ["--enable-metrics=false"]
ROUNDS = 3


def _config(bench: Bench, name: str, tracing: str) -> str:
    path = bench.env.procs.workdir / f"{name}.yaml"
    head = f"apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {{name: {name}}}\nspec:\n  tracing:\n"
    path.write_text(head + tracing)
    return str(path)


async def _run(bench: Bench) -> dict[str, Any]:
    env, name = bench.env, "observability-state-get-redis"
    resources = env.procs.workdir / "resources" / "redis"
    sink_port = free_port()
    await env.procs.python_app("span-sink", "perf.span_sink", [], port=sink_port)
    zipkin = f"http://127.0.0.1:{sink_port}/api/v2/spans"
    variants = {
        "off": _OFF,
        "metrics on": [],
        "tracing rate 0": [*_OFF, "-c", _config(bench, "rate0", '    samplingRate: "0"\n')],
        "tracing rate 1, zipkin": [
            *_OFF,
            "-c",
            _config(bench, "rate1", f'    samplingRate: "1"\n    zipkin: {{endpointAddress: "{zipkin}"}}\n'),
        ],
    }
    sidecars: dict[str, Process] = {}
    for label, extra in variants.items():
        slug = label.replace(" ", "-").replace(",", "")
        sidecars[label] = await env.procs.sidecar(f"sidecar-{slug}", APP_IDS["redis"], resources, extra=extra)
    key = f"perf-observability-{env.run_id}"
    body = orjson.dumps([{"key": key, "value": value(bench.config.payload)}])
    require(await probe(sidecars["off"].port, "POST", "/v1.0/state/statestore", body, **JSON), 204, "saving state")
    request = http_request("GET", f"/v1.0/state/statestore/{key}")
    by_variant: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
    duration = max(1.0, bench.config.duration / ROUNDS)
    for _ in range(ROUNDS):  # the variants take turns, so the machine's drift falls on all of them alike
        for label in variants:
            process = sidecars[label]
            target = HttpTarget("sidecar", process.port, request)
            by_variant[label].append(await bench.measure(name, label, target, [process], duration=duration))
    runs = [_median_run(found) for found in by_variant.values()]
    base = runs[0]
    diffs = [{**added(run, base), "vs": f"off → {run['label']}"} for run in runs[1:]]
    p90s = {label: ", ".join(f"{run['latency_ms']['p90']:.2f}" for run in found) for label, found in by_variant.items()}
    spread = "p90 of each run (ms): " + "; ".join(f"{label}: {values}" for label, values in p90s.items())
    notes = [f"each variant ran {ROUNDS} times in turn, {duration:g} s each; shown: its run of median p90", spread]
    return {"runs": runs, "added": diffs, "notes": notes}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda run: run["latency_ms"]["p90"])[len(runs) // 2]


SCENARIOS = [
    Scenario(
        "observability-state-get-redis",
        "state get on Redis: metrics and tracing off, metrics on, tracing at rate 0, tracing at rate 1 to Zipkin",
        "latency",
        frozenset({"redis"}),
        4 * ROUNDS,
        _run,
    )
]
