"""Resiliency in Dapr's metrics: resources loaded, and each activation (retry, timeout, breaker state change)
with daprd's labels (``target`` = ``<ComponentType>_<name>``, ``flow_direction`` outbound)."""

from __future__ import annotations

from pathlib import Path

from tests.governance.redis_server import private_redis
from tests.governance.test_component_resiliency import _resources, _save, resiliency_yaml
from tests.observability.test_metrics import samples, scrape, value
from tests.observability.tools import free_port
from tests.sidecar import running_sidecar


async def test_retries_and_breaker_changes_are_counted(tmp_path: Path) -> None:
    policy = resiliency_yaml(
        """\
        retries:
          twice: {policy: constant, duration: 10ms, maxRetries: 2}
        circuitBreakers:
          breaker: {maxRequests: 1, timeout: 30s, trip: consecutiveFailures >= 3}
        """,
        """\
        components:
          statestore:
            outbound: {retry: twice, circuitBreaker: breaker}
        """,
        name="myresiliency",
    )
    port = free_port()
    with private_redis() as redis:
        async with running_sidecar(_resources(tmp_path, redis.address, policy), metrics_port=port) as side:
            redis.stop()
            failed = await _save(side.client, "statestore", "k", "v")  # 3 attempts: 2 retries, then the breaker opens
            assert failed.status_code == 500
            text = await scrape(port)
    common = {"app_id": side.app_id, "name": "myresiliency", "namespace": "", "flow_direction": "outbound"}
    target = {**common, "target": "Statestore_statestore"}
    assert value(text, "dapr_resiliency_activations_total", policy="retry", status="", **target) == 2
    assert value(text, "dapr_resiliency_activations_total", policy="circuitbreaker", status="open", **target) == 1
    states = {s.labels["status"]: s.value for s in samples(text, "dapr_resiliency_cb_state")}
    assert states == {"closed": 0, "half-open": 0, "open": 1, "unknown": 0}
    assert value(text, "dapr_resiliency_loaded", app_id=side.app_id, name="myresiliency") == 1
