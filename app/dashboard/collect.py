"""What the dashboard shows, gathered from each running sidecar's own endpoints.

The sidecars are those ``layotto list`` shows (``app.instances``). From each: ``/v1.0/metadata`` (app,
components, subscriptions), ``/actuator/health/readiness`` (each component's health), and from its metrics
listener the Prometheus text (request counts and latencies, component calls, pub/sub counts) and
``/layotto/deliveries`` (the last deliveries to the app). A sidecar that does not answer is shown as such.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.instances import Instance, running

__all__ = ("collect", "summarize_metrics")

TIMEOUT = 2.0
#: The component call counters (the parser may add ``_total``), and the block each counts.
_COMPONENT_COUNTS = {
    "dapr_component_state_count": "state",
    "dapr_component_secret_count": "secret",
    "dapr_component_configuration_count": "configuration",
    "layotto_component_lock_count": "lock",
    "layotto_component_sequencer_count": "sequencer",
}


def _quantile(buckets: list[tuple[float, float]], count: float, q: float) -> float | None:
    """The ``q`` quantile from cumulative (upper bound, count) buckets, interpolated as Prometheus does."""
    if count <= 0:
        return None
    rank, lower, below = q * count, 0.0, 0.0
    for bound, cumulative in sorted(buckets):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0)
        lower, below = bound, cumulative
    return lower


@dataclass
class _Route:
    """One method and path's requests: counts, and the latency histogram summed over statuses."""

    count: float = 0.0
    errors: float = 0.0
    sum: float = 0.0
    observed: float = 0.0
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))


def summarize_metrics(text: str) -> dict[str, Any]:
    """Requests per method and path (count, errors, mean and p90 latency), component calls, pub/sub counts."""
    requests: dict[tuple[str, str], _Route] = defaultdict(_Route)
    components: dict[tuple[str, str, str], dict[str, float]] = defaultdict(lambda: {"ok": 0.0, "failed": 0.0})
    pubsub: dict[tuple[str, str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            key = (labels.get("method", ""), labels.get("path", ""))
            if name.startswith("dapr_http_server_request_count"):
                requests[key].count += value
                if labels.get("status", "").isdigit() and int(labels["status"]) >= 400:
                    requests[key].errors += value
            elif name == "dapr_http_server_latency_bucket":
                requests[key].buckets[float(labels["le"])] += value
            elif name == "dapr_http_server_latency_sum":
                requests[key].sum += value
            elif name == "dapr_http_server_latency_count":
                requests[key].observed += value
            elif name.removesuffix("_total") in _COMPONENT_COUNTS:
                block = _COMPONENT_COUNTS[name.removesuffix("_total")]
                entry = components[(labels.get("component", ""), block, labels.get("operation", ""))]
                entry["ok" if labels.get("success") == "true" else "failed"] += value
            elif name.startswith("dapr_component_pubsub_egress_count"):
                pubsub[("published", labels.get("topic", ""), labels.get("success", ""))] += value
            elif name.startswith("dapr_component_pubsub_ingress_count"):
                pubsub[("delivered", labels.get("topic", ""), labels.get("process_status", ""))] += value
    rows = []
    for (method, path), route in sorted(requests.items()):
        observed = route.observed
        rows.append(
            {
                "method": method,
                "path": path,
                "count": route.count,
                "errors": route.errors,
                "mean_ms": route.sum / observed if observed else None,
                "p90_ms": _quantile(list(route.buckets.items()), observed, 0.9),
            }
        )
    return {
        "requests": rows,
        "total_requests": sum(row["count"] for row in rows),
        "components": [
            {"component": c, "block": b, "operation": o, **counts} for (c, b, o), counts in sorted(components.items())
        ],
        "pubsub": [{"direction": d, "topic": t, "status": s, "count": n} for (d, t, s), n in sorted(pubsub.items())],
    }


async def _json(client: httpx.AsyncClient, url: str) -> Any:
    response = await client.get(url)
    return response.json()


async def _sidecar(client: httpx.AsyncClient, instance: Instance) -> dict[str, Any]:
    api = f"http://127.0.0.1:{instance.http_port}"
    found: dict[str, Any] = {
        "app_id": instance.app_id,
        "pid": instance.pid,
        "http_port": instance.http_port,
        "metrics_port": instance.metrics_port,
        "app_port": instance.app_port,
        "command": instance.command,
        "age_s": round(time.time() - instance.created),
        "reachable": False,
    }
    try:
        metadata, health = await asyncio.gather(
            _json(client, f"{api}/v1.0/metadata"), _json(client, f"{api}/actuator/health/readiness")
        )
    except (httpx.HTTPError, ValueError) as exc:
        found["problem"] = str(exc) or type(exc).__name__
        return found
    statuses = health.get("components", {}) if isinstance(health, dict) else {}
    found.update(
        reachable=True,
        health=health.get("status", "") if isinstance(health, dict) else "",
        components=[
            {**component, "status": statuses.get(component.get("name"), {}).get("status", "INIT")}
            for component in metadata.get("components", [])
        ],
        subscriptions=metadata.get("subscriptions", []),
        version=metadata.get("runtimeVersion", ""),
    )
    if instance.metrics_port:
        base = f"http://127.0.0.1:{instance.metrics_port}"
        try:
            text = (await client.get(f"{base}/metrics")).text
            found["metrics"] = summarize_metrics(text)
            found["deliveries"] = await _json(client, f"{base}/layotto/deliveries")
        except (httpx.HTTPError, ValueError) as exc:
            found["metrics_problem"] = str(exc) or type(exc).__name__
    return found


async def collect() -> dict[str, Any]:
    """Every running sidecar, as the page renders it."""
    instances = running()
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        sidecars = await asyncio.gather(*(_sidecar(client, instance) for instance in instances))
    return {"time": time.time(), "sidecars": list(sidecars)}
