"""The targets of issue 6, checked against a run's figures: PASS, MISS, or n/a when not measured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ("TARGETS", "evaluate")

Report = dict[str, Any]


@dataclass(frozen=True)
class Target:
    metric: str
    limit: float
    at_most: bool  # True: measured <= limit passes; False: measured >= limit passes
    unit: str
    anchor: str
    measure: Callable[[Report], tuple[float | None, str]]  # (value, where it comes from / why missing)


def _scenario(report: Report, name: str) -> dict[str, Any] | None:
    return next((s for s in report["scenarios"] if s["name"] == name), None)


def _missing(scenario: dict[str, Any] | None) -> tuple[None, str]:
    if scenario is None:
        return None, "not run"
    return None, f"{scenario['status']}: {scenario.get('reason', '')}".strip()


def _added_p90(name: str) -> Callable[[Report], tuple[float | None, str]]:
    def measure(report: Report) -> tuple[float | None, str]:
        scenario = _scenario(report, name)
        if scenario is None or scenario["status"] != "ok" or not scenario["added"]:
            return _missing(scenario)
        first = scenario["added"][0]
        return first["p90"], f"{name}, vs {first['vs']}"

    return measure


def _cpu(name: str) -> Callable[[Report], tuple[float | None, str]]:
    def measure(report: Report) -> tuple[float | None, str]:
        scenario = _scenario(report, name)
        if scenario is None or scenario["status"] != "ok":
            return _missing(scenario)
        sidecar = scenario["runs"][-1].get("sidecar", {})
        return sidecar.get("cpu_per_1k_requests"), f"{name}: CPU s per 1000 requests = cores at 1000 rps"

    return measure


def _idle_rss(report: Report) -> tuple[float | None, str]:
    default = report["resources"].get("sidecars", {}).get("default", {})
    return default.get("idle_rss_mb"), "default sidecar, VmRSS 2 s after healthy"


def _growth(report: Report) -> tuple[float | None, str]:
    sidecars = report["resources"].get("sidecars", {})
    served = {role: s for role, s in sidecars.items() if s.get("rss_growth_mb") is not None and s["load_seconds"]}
    if not served:
        return None, "no sidecar served load"
    role, worst = max(served.items(), key=lambda item: item[1]["rss_growth_mb"])
    return worst["rss_growth_mb"], f"largest: {role} sidecar, idle -> end, over {worst['load_seconds']:.0f} s of load"


def _start(report: Report) -> tuple[float | None, str]:
    default = report["resources"].get("sidecars", {}).get("default", {})
    return default.get("start_to_healthy_s"), "spawn of `python -m app.cli run` -> first 204 from /v1.0/healthz"


def _throughput(report: Report) -> tuple[float | None, str]:
    scenario = _scenario(report, "max-throughput")
    if scenario is None or scenario["status"] != "ok":
        return _missing(scenario)
    asgi, via = scenario["runs"]
    return scenario["ratio"], f"{via['achieved_rate']:,.0f} vs {asgi['achieved_rate']:,.0f} req/s"


TARGETS = [
    Target("state get on Redis, added p90", 0.5, True, "ms", "Dapr 1.18 HTTP 0.81 ms", _added_p90("state-get-redis")),
    Target("state get on SQLite default, added p90", 0.5, True, "ms", "(same target)", _added_p90("state-get-sqlite")),
    Target("publish to Redis, added p90", 0.5, True, "ms", "Dapr Kafka HTTP 0.49 ms", _added_p90("publish-redis")),
    Target("publish to Kafka, added p90", 0.5, True, "ms", "Dapr Kafka HTTP 0.49 ms", _added_p90("publish-kafka")),
    Target("invocation via 2 sidecars, added p90", 1.0, True, "ms", "Dapr 1.18 HTTP 1.03 ms", _added_p90("invoke")),
    Target("CPU per 1000 rps, state get on Redis", 0.4, True, "core", "Dapr 0.48 vCPU", _cpu("state-get-redis")),
    Target("CPU per 1000 rps, state get on SQLite", 0.4, True, "core", "Dapr 0.48 vCPU", _cpu("state-get-sqlite")),
    Target("sidecar RSS idle (default components)", 60.0, True, "MB", "daprd 33-52 MB", _idle_rss),
    Target("sidecar RSS growth under load", 15.0, True, "MB", "Layotto < 15 MB", _growth),
    Target("start to healthy (embedded default)", 1.0, True, "s", "-", _start),
    Target("max state-get throughput vs bare ASGI", 0.8, False, "x", "the Python floor", _throughput),
]


def evaluate(report: Report) -> list[dict[str, Any]]:
    rows = []
    for target in TARGETS:
        value, source = target.measure(report)
        if value is None:
            status = "n/a"
        else:
            passed = value <= target.limit if target.at_most else value >= target.limit
            status = "PASS" if passed else "MISS"
        rows.append(
            {
                "metric": target.metric,
                "target": f"{'≤' if target.at_most else '≥'} {target.limit:g} {target.unit}",
                "measured": value,
                "unit": target.unit,
                "status": status,
                "source": source,
                "anchor": target.anchor,
            }
        )
    return rows
