"""What every scenario shares: the scenario record, probes, and the added-latency arithmetic."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from perf.bench import Bench
from perf.environment import Unavailable

__all__ = ("Scenario", "Unavailable", "added", "latency_result", "probe", "require")

Runner = Callable[[Bench], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    kind: str  # "latency" (open loop vs baselines) | "e2e" | "ops" (closed loop) | "throughput"
    roles: frozenset[str]  # what it needs started (see perf.environment)
    runs: int  # measured runs, for the progress counter
    run: Runner


async def probe(port: int, method: str, path: str, body: bytes | None = None, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
        return await client.request(method, path, content=body, headers=headers)


def describe(response: httpx.Response) -> str:
    """``HTTP 501 ERR_API_UNIMPLEMENTED`` from a Dapr error body, else the status and the start of the body."""
    try:
        code = response.json().get("errorCode")
    except (ValueError, AttributeError):
        code = None
    return f"HTTP {response.status_code} {code or response.text[:80]}".strip()


def require(response: httpx.Response, status: int, what: str) -> None:
    """Unavailable("not available: ...") unless ``response`` has ``status``."""
    if response.status_code != status:
        raise Unavailable(f"not available: {what} answered {describe(response)}")


def added(sidecar: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """Dapr's figure: sidecar percentile - baseline percentile (ms), and the p90 ratio."""
    s, b = sidecar["latency_ms"], baseline["latency_ms"]
    return {
        "vs": baseline["label"],
        "p50": round(s["p50"] - b["p50"], 3),
        "p90": round(s["p90"] - b["p90"], 3),
        "p99": round(s["p99"] - b["p99"], 3),
        "ratio_p90": round(s["p90"] / b["p90"], 2) if b["p90"] > 0 else None,
    }


def latency_result(runs: list[dict[str, Any]], notes: list[str] | None = None) -> dict[str, Any]:
    """Runs (baselines first, the sidecar run last) and the sidecar's added latency against each baseline."""
    sidecar = runs[-1]
    return {
        "runs": runs,
        "added": [added(sidecar, baseline) for baseline in runs[:-1]],
        "notes": notes or [],
    }
