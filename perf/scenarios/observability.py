"""What observability costs on the hot path: state get on Redis through sidecars that differ only in it.

Every variant is its own sidecar process on the same Redis key, measured one after the other in the same
run: metrics and tracing off (the baseline, measured first and again last: the difference between the two
is the run's drift), metrics on (the default), tracing configured with ``samplingRate: "0"``, and tracing
with ``samplingRate: "1"`` exporting every span to Zipkin (a sink that accepts and drops them).
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
    runs: list[dict[str, Any]] = []
    for label in [*variants, "off"]:
        process = sidecars[label]
        shown = "off (again)" if label == "off" and runs else label
        run = await bench.measure(name, shown, HttpTarget("sidecar", process.port, request), [process])
        runs.append(run)
    base = runs[0]
    diffs = [{**added(run, base), "vs": f"off → {run['label']}"} for run in runs[1:]]
    return {"runs": runs, "added": diffs, "notes": ["added = variant - first 'off' run; 'off (again)' shows drift"]}


SCENARIOS = [
    Scenario(
        "observability-state-get-redis",
        "state get on Redis: metrics and tracing off, metrics on, tracing at rate 0, tracing at rate 1 to Zipkin",
        "latency",
        frozenset({"redis"}),
        5,
        _run,
    )
]
