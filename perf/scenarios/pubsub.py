"""Publishing through a sidecar (Redis Streams, Kafka) against publishing directly with the same client
library, and the end-to-end path publish -> broker -> subscriber's sidecar -> app, with its delivery rate."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from building_blocks._common.redis import execute
from perf.bench import Bench
from perf.clients import KafkaProducer, redis_client
from perf.environment import Unavailable
from perf.loadgen import CallTarget, HttpTarget, closed_loop, http_request, open_loop, percentile
from perf.payloads import JSON, event, publish_request, value_bytes
from perf.scenarios.common import Scenario, latency_result, probe, require

__all__ = ("E2E_SCENARIOS", "SCENARIOS")

_DIRECT = {"redis": "direct (redis-py XADD)", "kafka": "direct (confluent-kafka)"}
_DRAIN_IDLE = 5.0  # seconds without a new delivery before the end-to-end run stops waiting


async def _publish(bench: Bench, kind: str) -> dict[str, Any]:
    env, name = bench.env, f"publish-{kind}"
    sidecar = env.sidecar(kind)
    topic = env.topic(f"publish-{kind}")
    payload = value_bytes(bench.config.payload)
    path = f"/v1.0/publish/pubsub/{topic}"
    require(await probe(sidecar.port, "POST", path, payload, **JSON), 204, "publishing")
    runs = []
    if kind == "redis":
        client = redis_client(env.redis)

        async def call(index: int, scheduled: int) -> None:
            await execute(client, "XADD", topic, "*", "data", payload)

        try:
            runs.append(await bench.measure(name, _DIRECT[kind], CallTarget("direct", call)))
        finally:
            await client.aclose()
    else:
        if env.brokers is None:
            raise Unavailable("no Kafka broker")
        producer = await asyncio.to_thread(KafkaProducer, env.brokers)

        async def produce(index: int, scheduled: int) -> None:
            await producer.publish(topic, payload)

        try:
            runs.append(await bench.measure(name, _DIRECT[kind], CallTarget("direct", produce)))
        finally:
            await asyncio.to_thread(producer.close)
    request = http_request("POST", path, payload, JSON)
    runs.append(await bench.measure(name, "sidecar", HttpTarget("sidecar", sidecar.port, request), [sidecar]))
    return latency_result(runs)


async def _received(port: int, run: str) -> list[list[int]]:
    response = await probe(port, "GET", f"/received/{run}")
    records: list[list[int]] = orjson.loads(response.content)
    return records


async def _wait_subscribed(publisher: int, app: int, topic: str, run: str, timeout: float = 45.0) -> float:
    """Publishes probe events until the app receives one (Kafka group joins take seconds); the wait."""
    started = time.monotonic()
    path = f"/v1.0/publish/pubsub/{topic}"
    while time.monotonic() - started < timeout:
        body = event(run, 0, time.monotonic_ns(), 64)
        require(await probe(publisher, "POST", path, body, **JSON), 204, "publishing")
        for _ in range(10):
            if await _received(app, run):
                return time.monotonic() - started
            await asyncio.sleep(0.05)
    raise Unavailable(f"no event reached the subscriber app within {timeout:.0f}s")


async def _drain(app: int, run: str, expected: int, wait: float) -> list[list[int]]:
    """The run's deliveries, once all ``expected`` arrived, none came for ``_DRAIN_IDLE`` s, or ``wait`` s passed."""
    started = last_change = time.monotonic()
    seen = -1
    while True:
        records = await _received(app, run)
        now = time.monotonic()
        if len({r[0] for r in records}) >= expected or now - started > wait:
            return records
        if len(records) != seen:
            seen, last_change = len(records), now
        elif now - last_change > _DRAIN_IDLE:
            return records
        await asyncio.sleep(0.1)


def _delivery(records: list[list[int]], published: int) -> dict[str, Any]:
    latencies = sorted(received - scheduled for _, scheduled, received in records)
    unique = len({index for index, _, _ in records})
    first = min((r[2] for r in records), default=0)
    last = max((r[2] for r in records), default=0)
    span = (last - first) / 1e9
    return {
        "published": published,
        "delivered": unique,
        "duplicates": len(records) - unique,
        "undelivered": max(published - unique, 0),  # not (yet) delivered when the run stopped waiting
        "messages_per_s": round(unique / span, 1) if span > 0 else None,
        "latency_ms": {
            "p50": percentile(latencies, 50) / 1e6,
            "p90": percentile(latencies, 90) / 1e6,
            "p99": percentile(latencies, 99) / 1e6,
            "max": (latencies[-1] / 1e6) if latencies else 0.0,
            "mean": (sum(latencies) / len(latencies) / 1e6) if latencies else 0.0,
        },
    }


async def _end_to_end(bench: Bench, kind: str) -> dict[str, Any]:
    env, name, config = bench.env, f"e2e-{kind}", bench.config
    publisher, subscriber = env.sidecar(kind), env.sidecar("apps")
    app = env.app("apps")
    if kind == "kafka" and env.brokers is None:
        raise Unavailable("no Kafka broker")
    topic = env.topic(f"e2e-{kind}")
    waited = await _wait_subscribed(publisher.port, app.port, topic, f"probe-{kind}")
    bench.log(f"    subscriber receiving after {waited:.1f} s")

    def target(run: str) -> HttpTarget:
        return HttpTarget("sidecar", publisher.port, publish_request("pubsub", topic, run, config.payload))

    if config.warmup > 0:
        await open_loop(target(f"warm-{kind}"), config.rate, config.warmup, config.connections, config.drain)
    run = await bench.measure(name, "publish (sidecar)", target(f"run-{kind}"), [publisher, subscriber], warmup=False)
    ok = run["completed"] - sum(v for k, v in run["error_kinds"].items() if k.startswith("HTTP "))
    delivered = _delivery(await _drain(app.port, f"run-{kind}", ok, config.delivery_wait), ok)
    delivered["label"] = "delivered to app"
    lat = delivered["latency_ms"]
    bench.log(
        f"    → delivered {delivered['delivered']}/{ok} at {delivered['messages_per_s'] or 0:,.0f}/s,"
        f" p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f} ms"
    )
    notes = [f"the subscriber received a first probe event {waited:.1f} s after subscribing"]
    if delivered["undelivered"]:
        notes.append(
            f"{delivered['undelivered']} events not delivered within {config.delivery_wait:g} s after the run:"
            " delivery is slower than the publish rate, and its percentiles cover delivered events only"
        )
    outcome: dict[str, Any] = {"runs": [run, delivered], "added": [], "notes": notes, "delivery": delivered}
    if not config.quick:
        outcome["capacity"] = await _capacity(bench, target(f"burst-{kind}"), app.port, f"burst-{kind}")
    return outcome


async def _capacity(bench: Bench, target: HttpTarget, app: int, run: str) -> dict[str, Any]:
    """Publishes as fast as possible for a quarter of the run time, then measures how fast the app receives."""
    config = bench.config
    burst = await closed_loop(target, max(config.duration / 4, 1.0), config.connections)
    published = burst.completed - sum(v for k, v in burst.errors.items() if k.startswith("HTTP "))
    capacity = _delivery(await _drain(app, run, published, config.delivery_wait), published)
    bench.log(
        f"    → burst: published {burst.achieved_rate:,.0f}/s, delivered {capacity['messages_per_s'] or 0:,.0f}/s"
        f" ({capacity['delivered']}/{published})"
    )
    return {
        "published_per_s": round(burst.achieved_rate, 1),
        "delivered_per_s": capacity["messages_per_s"],
        "published": published,
        "delivered": capacity["delivered"],
        "undelivered": capacity["undelivered"],
    }


def _publish_scenario(kind: str) -> Scenario:
    async def run(bench: Bench) -> dict[str, Any]:
        return await _publish(bench, kind)

    label = "Redis Streams" if kind == "redis" else "Kafka (Tansu)"
    return Scenario(f"publish-{kind}", f"publish to {label}", "latency", frozenset({kind}), 2, run)


def _e2e_scenario(kind: str) -> Scenario:
    async def run(bench: Bench) -> dict[str, Any]:
        return await _end_to_end(bench, kind)

    label = "Redis Streams" if kind == "redis" else "Kafka (Tansu)"
    return Scenario(f"e2e-{kind}", f"publish → delivered to app, {label}", "e2e", frozenset({kind, "apps"}), 1, run)


SCENARIOS = [_publish_scenario("redis"), _publish_scenario("kafka")]
#: Run last: a burst can leave a backlog that the subscriber's sidecar keeps delivering after the scenario.
E2E_SCENARIOS = [_e2e_scenario("redis"), _e2e_scenario("kafka")]
