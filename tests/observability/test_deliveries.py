"""Pub/sub deliveries observed: daprd's ingress counts, the app channel's client metrics, the delivery span."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import orjson

from tests.observability.receiver import Receiver
from tests.observability.test_metrics import scrape, value
from tests.observability.test_tracing import config, of_trace
from tests.observability.tools import free_port
from tests.sidecar import component_yaml, running_sidecar
from tests.subscriber_app import SubscriberApp, serving


async def test_deliveries_are_counted_and_traced(tmp_path: Path) -> None:
    (tmp_path / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.in-memory"))
    subscriptions = [{"pubsubname": "pubsub", "topic": t, "route": f"/{t}"} for t in ("ok", "dropped")]
    trace_id = secrets.token_hex(16)
    parent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    metrics_port = free_port()
    with Receiver() as receiver:
        path = config(
            tmp_path / "config.yaml", f"samplingRate: '1'\nzipkin: {{endpointAddress: '{receiver.zipkin_url}'}}"
        )
        app = SubscriberApp(subscriptions)
        app.answers["/dropped"] = [(200, b'{"status": "DROP"}')]
        async with (
            serving(app),
            running_sidecar(tmp_path, app_port=app.port, metrics_port=metrics_port, config_file=path) as side,
        ):
            while len(side.runtime.pubsub.active) < 2:
                await asyncio.sleep(0.02)
            answer = await side.client.post("/v1.0/publish/pubsub/ok", json={"n": 1}, headers={"traceparent": parent})
            assert answer.status_code == 204
            assert (await side.client.post("/v1.0/publish/pubsub/dropped", json={"n": 2})).status_code == 204
            [delivered] = await app.wait_for("/ok", 1)
            await app.wait_for("/dropped", 1)
            text = await scrape(metrics_port)
            while value(text, "dapr_component_pubsub_ingress_count", topic="dropped") < 1:
                await asyncio.sleep(0.02)
                text = await scrape(metrics_port)
            async with httpx.AsyncClient() as client:
                recent = (await client.get(f"http://127.0.0.1:{metrics_port}/layotto/deliveries")).json()
        spans = [s for s in receiver.wait_for(of_trace(trace_id, 3)) if s.trace_id == trace_id]
    # the last deliveries, newest first, for the dashboard
    assert [(d["topic"], d["path"], d["status"]) for d in recent] == [
        ("dropped", "/dropped", "drop"),
        ("ok", "/ok", "success"),
    ]
    ok = {"app_id": side.app_id, "component": "pubsub", "namespace": "", "topic": "ok"}
    assert value(text, "dapr_component_pubsub_ingress_count", process_status="success", status="success", **ok) == 1
    assert value(text, "dapr_component_pubsub_ingress_latencies_count", **ok) == 1
    dropped = {"component": "pubsub", "topic": "dropped", "process_status": "drop", "status": "success"}
    assert value(text, "dapr_component_pubsub_ingress_count", **dropped) == 1
    # the app channel, as daprd's HTTP client: the deliveries and GET /dapr/subscribe
    assert value(text, "dapr_http_client_completed_count", method="POST", path="/ok", status="200") == 1
    assert value(text, "dapr_http_client_completed_count", method="GET", path="/dapr/subscribe", status="200") == 1
    assert value(text, "dapr_http_client_sent_bytes_count", method="POST", path="/ok", status="") == 1
    # publish API span -> publish component span; the delivery span's parent is the CloudEvent's traceparent
    api = next(s for s in spans if s.kind == "SERVER")
    delivery = next(s for s in spans if s.name == "pubsub/ok")
    assert delivery.parent_id == api.span_id and delivery.kind == "CLIENT"
    assert delivery.attributes["messaging.destination.name"] == "ok"
    assert delivered.headers["traceparent"] == f"00-{trace_id}-{delivery.span_id}-01"


def test_the_topic_of_a_large_event_is_read_off_its_head() -> None:
    from app.observability.delivery import _topic

    assert _topic(orjson.dumps({"id": "1", "topic": "orders", "data": "x" * 200_000})) == "orders"
    assert _topic(orjson.dumps({"id": "1", "topic": "small", "data": {"topic": "inner"}})) == "small"
    assert _topic(b"not json") == "" and _topic(b"[1]") == ""
