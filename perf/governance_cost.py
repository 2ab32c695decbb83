"""What governance costs on one state get, measured in-process (``python -m perf.governance_cost``).

Variants, each a sidecar app in this process on an in-memory state store, taking turns in short rounds
(the machine's drift falls on all alike; see ``perf.observability_cost``, whose request driver this reuses):
* ``unconfigured``: no Resiliency, no ``--config``, no app concurrency limit: the baseline;
* ``a --config, governing nothing``: what a ``--config`` file costs before governance (the observed door);
* ``governed elsewhere``: a Resiliency policy for another component, secret scopes, an API deny list for
  another API: the state get path must not notice beyond the line above (no layer on its block, the same
  route table);
* ``resiliency on the store``: timeout, retries and a circuit breaker on the state store;
* ``ratelimit`` and ``sentinel``: an HTTP pipeline with one handler that lets every request through.
The report gives p50/p90 per variant and what each adds to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from perf.observability_cost import _get

__all__ = ("main",)

_STATE = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: statestore}\nspec: {type: state.in-memory, version: v1, metadata: []}\n"  # noqa: E501
_LOCK = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: lockstore}\nspec: {type: lock.in-memory, version: v1, metadata: []}\n"  # noqa: E501


def _resiliency(target: str) -> str:
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: r}\nspec:\n  policies:\n"
        "    timeouts: {quick: 5s}\n    retries: {few: {policy: constant, duration: 1s, maxRetries: 3}}\n"
        "    circuitBreakers: {cb: {trip: consecutiveFailures > 5, timeout: 30s}}\n"
        f"  targets:\n    components:\n      {target}:\n"
        "        outbound: {timeout: quick, retry: few, circuitBreaker: cb}\n"
    )


def _middleware(name: str, kind: str, metadata: dict[str, str]) -> str:
    items = "".join(f"\n    - {{name: {k}, value: {json.dumps(v)}}}" for k, v in metadata.items())
    return f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: {name}}}\nspec:\n  type: {kind}\n  version: v1\n  metadata:{items}\n"  # noqa: E501


def _folder(root: Path, name: str, files: dict[str, str]) -> Path:
    folder = root / name
    folder.mkdir()
    for file, text in {"state.yaml": _STATE, "lock.yaml": _LOCK, **files}.items():
        (folder / file).write_text(text)
    return folder


def _config(root: Path, name: str, spec: str) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(f"apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {{name: {name}}}\nspec:\n{spec}")
    return path


def _pipeline(root: Path, name: str, kind: str) -> Path:
    return _config(root, name, f"  httpPipeline:\n    handlers: [{{name: {name}, type: {kind}}}]\n")


def _variants(root: Path) -> dict[str, dict[str, Any]]:
    elsewhere = _config(
        root,
        "elsewhere",
        "  secrets:\n    scopes: [{storeName: vault, defaultAccess: deny}]\n"
        "  api:\n    denied: [{name: lock, version: v1alpha1, protocol: http}]\n",
    )
    rate = _middleware("limit", "middleware.http.ratelimit", {"maxRequestsPerSecond": "1000000000"})
    flows = json.dumps([{"resource": "GET:/elsewhere", "threshold": 1}])
    sentinel = _middleware("sentinel", "middleware.http.sentinel", {"appName": "perf", "flowRules": flows})
    return {
        "unconfigured": {"resources_paths": (_folder(root, "plain", {}),)},
        # a --config file alone switches the front door to the observed one (app.observability): its own cost
        "a --config, governing nothing": {
            "resources_paths": (_folder(root, "config-only", {}),),
            "config_file": _config(root, "empty", "  features: []\n"),
        },
        "governed elsewhere": {
            "resources_paths": (_folder(root, "elsewhere", {"r.yaml": _resiliency("lockstore")}),),
            "config_file": elsewhere,
        },
        "resiliency on the store": {
            "resources_paths": (_folder(root, "resilient", {"r.yaml": _resiliency("statestore")}),)
        },
        "ratelimit": {
            "resources_paths": (_folder(root, "limited", {"limit.yaml": rate}),),
            "config_file": _pipeline(root, "limit", "middleware.http.ratelimit"),
        },
        "sentinel": {
            "resources_paths": (_folder(root, "sentinel", {"sentinel.yaml": sentinel}),),
            "config_file": _pipeline(root, "sentinel", "middleware.http.sentinel"),
        },
    }  # fmt: skip


async def measure(rounds: int, per_round: int) -> dict[str, dict[str, float]]:
    from app.main import create_app
    from app.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="layotto-gov-cost-"))
    apps: dict[str, Any] = {}
    for label, flags in _variants(root).items():
        app = create_app(Settings(app_id=f"gov-{len(apps)}", enable_metrics=False, metrics_port=0, **flags))
        await app._start(grpc=False)
        await app.runtime.wait_ready()
        apps[label] = app
    key = "cost-key"
    seed = orjson.dumps([{"key": key, "value": {"a": 1}}])
    for app in apps.values():
        assert await _get(app, "/v1.0/state/statestore", "POST", seed) == 204
    path = f"/v1.0/state/statestore/{key}"
    samples: dict[str, list[float]] = {label: [] for label in apps}
    for app in apps.values():  # warm-up
        for _ in range(per_round):
            await _get(app, path)
    for _ in range(rounds):
        for label, app in apps.items():
            timings = samples[label]
            for _ in range(per_round):
                started = time.perf_counter_ns()
                status = await _get(app, path)
                timings.append((time.perf_counter_ns() - started) / 1000)
                assert status == 200, (label, status)
    for app in apps.values():
        await app._close()
    report = {}
    for label, timings in samples.items():
        ordered = sorted(timings)
        report[label] = {"p50_us": statistics.median(ordered), "p90_us": ordered[int(len(ordered) * 0.9)]}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--per-round", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("HOME", tempfile.mkdtemp(prefix="layotto-gov-cost-home-"))
    report = asyncio.run(measure(args.rounds, args.per_round))
    base = report["unconfigured"]
    print(f"state get through the front door, in-process, {args.rounds} x {args.per_round} requests per variant")
    print(f"{'variant':<30}{'p50 us':>10}{'p90 us':>10}{'+p50 us':>10}")
    for label, figures in report.items():
        added = figures["p50_us"] - base["p50_us"]
        print(f"{label:<30}{figures['p50_us']:>10.2f}{figures['p90_us']:>10.2f}{added:>+10.2f}")


if __name__ == "__main__":
    main()
