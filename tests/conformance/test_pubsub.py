"""The pub/sub conformance suite: every broker component, publish through the HTTP API, deliveries to a
real subscriber app over HTTP, held to the same behaviour; and over gRPC, publish and the streaming
subscription. A new component joins by adding to ``BROKERS``."""

from __future__ import annotations

import asyncio
import base64
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from dapr.proto.runtime.v1 import appcallback_pb2, pubsub_pb2

from tests.grpc.fronts import grpc_front
from tests.services import require_redis
from tests.sidecar import Sidecar, component_yaml, running_sidecar
from tests.subscriber_app import SubscriberApp, serving


@dataclass(frozen=True)
class BrokerCase:
    component_type: str
    metadata: Callable[[pytest.FixtureRequest], dict[str, str]]


def _kafka(request: pytest.FixtureRequest) -> dict[str, str]:
    brokers: str = request.getfixturevalue("kafka_brokers")
    return {"brokers": brokers, "authType": "none", "initialOffset": "oldest"}


BROKERS = {
    "in-memory": BrokerCase("pubsub.in-memory", lambda _: {"redeliverInterval": "0.2s"}),
    "redis": BrokerCase(
        "pubsub.redis",
        lambda _: {"redisHost": require_redis(), "processingTimeout": "1s", "redeliverInterval": "0.3s"},
    ),
    "kafka": BrokerCase("pubsub.kafka", _kafka),
}
COMPONENT_TYPES = frozenset(case.component_type for case in BROKERS.values())  # checked by test_registry_coverage


@dataclass
class Broker:
    name: str
    case: BrokerCase
    resources: Path
    metadata: dict[str, str]

    def topic(self) -> str:
        return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=list(BROKERS))
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Broker:
    case = BROKERS[request.param]
    metadata = case.metadata(request)
    (tmp_path / "pubsub.yaml").write_text(component_yaml("pubsub", case.component_type, metadata))
    return Broker(request.param, case, tmp_path, metadata)


def subscription(topic: str, route: str = "/orders", **extra: Any) -> dict[str, Any]:
    return {"pubsubname": "pubsub", "topic": topic, "route": route, **extra}


async def until_subscribed(sidecar: Sidecar, count: int) -> None:
    async with asyncio.timeout(20):
        while len(sidecar.runtime.pubsub.active) < count:
            await asyncio.sleep(0.02)


async def settle(seconds: float = 1.5) -> None:
    """Long enough for any redelivery the components would make (redelivery intervals are < 1 s here)."""
    await asyncio.sleep(seconds)


@pytest.fixture
async def app() -> AsyncIterator[SubscriberApp]:
    async with serving(SubscriberApp()) as running:
        yield running


async def publish(sidecar: Sidecar, topic: str, body: bytes, content_type: str | None = None, query: str = "") -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await sidecar.client.post(f"/v1.0/publish/pubsub/{topic}{query}", content=body, headers=headers)
    assert response.status_code == 204, response.text


async def test_cloudevents_are_delivered_as_dapr_builds_them(broker: Broker, app: SubscriberApp) -> None:
    topic = broker.topic()
    app.subscriptions = [subscription(topic)]
    async with running_sidecar(broker.resources, app_port=app.port) as sidecar:
        await until_subscribed(sidecar, 1)
        await publish(sidecar, topic, b'{"status": "completed"}')
        await publish(sidecar, topic, b'{"order": 1}', "application/json")
        await publish(sidecar, topic, b"foo", "foo/bar")
        deliveries = await app.wait_for("/orders", 3)
        metadata = (await sidecar.client.get("/v1.0/metadata")).json()
    events = sorted((d.event for d in deliveries), key=lambda e: e["datacontenttype"])
    for delivery in deliveries:
        assert delivery.headers["content-type"] == "application/cloudevents+json"
        assert delivery.headers["pubsubname"] == "pubsub"
    for event in events:
        assert event["specversion"] == "1.0" and event["type"] == "com.dapr.event.sent"
        assert event["source"] == sidecar.app_id and event["topic"] == topic and event["pubsubname"] == "pubsub"
        assert uuid.UUID(event["id"]) and event["time"]
    assert [(e["datacontenttype"], e["data"]) for e in events] == [
        ("application/json", {"order": 1}),
        ("foo/bar", "foo"),
        ("text/plain", '{"status": "completed"}'),
    ]
    assert metadata["subscriptions"] == [
        {
            "pubsubname": "pubsub",
            "topic": topic,
            "metadata": {},
            "rules": [{"match": "", "path": "/orders"}],
            "deadLetterTopic": "",
            "type": "PROGRAMMATIC",
        }
    ]


async def test_raw_payloads(broker: Broker, app: SubscriberApp) -> None:
    topic = broker.topic()
    app.subscriptions = [subscription(topic, "/raw", metadata={"rawPayload": "true"})]
    async with running_sidecar(broker.resources, app_port=app.port) as sidecar:
        await until_subscribed(sidecar, 1)
        await publish(sidecar, topic, b"\x00\x01binary", query="?metadata.rawPayload=true")
        (delivery,) = await app.wait_for("/raw", 1)
    event = delivery.event
    assert event["datacontenttype"] == "application/octet-stream"
    assert base64.b64decode(event["data_base64"]) == b"\x00\x01binary"


async def test_the_apps_answer_decides(broker: Broker, app: SubscriberApp) -> None:
    routes = {
        "/empty": [(200, b"")],
        "/success": [(200, b'{"status": "SUCCESS"}')],
        "/retry": [(200, b'{"status": "RETRY"}'), (200, b'{"status": "SUCCESS"}')],
        "/error": [(500, b""), (200, b"")],
        "/invalid": [(200, b'{"status": "success"}'), (200, b"{}")],
        "/drop": [(200, b'{"status": "DROP"}')],
        "/missing": [(404, b"")],
    }
    topics = {path: broker.topic() for path in routes}
    app.subscriptions = [subscription(topic, path) for path, topic in topics.items()]
    app.answers = {path: list(answers) for path, answers in routes.items()}
    async with running_sidecar(broker.resources, app_port=app.port) as sidecar:
        await until_subscribed(sidecar, len(routes))
        for topic in topics.values():
            await publish(sidecar, topic, b"x")
        for path in ("/retry", "/error", "/invalid"):
            await app.wait_for(path, 2)
        await app.wait_for("/drop", 1)
        await app.wait_for("/missing", 1)
        await settle()
    for path in ("/empty", "/success", "/drop", "/missing"):
        assert len(app.at(path)) == 1, path
    for path in ("/retry", "/error", "/invalid"):
        assert len(app.at(path)) == 2, path  # redelivered once, then accepted: never again


async def test_dead_letter_topic_gets_dropped_and_failed_messages(broker: Broker, app: SubscriberApp) -> None:
    topic, dead = broker.topic(), broker.topic()
    app.subscriptions = [
        subscription(topic, "/a", deadLetterTopic=dead),
        subscription(dead, "/dead"),
    ]
    app.responders["/a"] = lambda body: (503, b"") if b"fail" in body else (200, b'{"status": "DROP"}')
    async with running_sidecar(broker.resources, app_port=app.port) as sidecar:
        await until_subscribed(sidecar, 2)
        await publish(sidecar, topic, b"fail")
        await publish(sidecar, topic, b"drop")
        dead_letters = await app.wait_for("/dead", 2)
        await settle()
    assert sorted(d.event["data"] for d in dead_letters) == ["drop", "fail"]
    assert {d.event["topic"] for d in dead_letters} == {topic}  # the original event, unchanged
    assert len(app.at("/a")) == 2
    assert len(app.at("/dead")) == 2


def resiliency_yaml(retry: dict[str, Any], timeout: str = "") -> str:
    policies: dict[str, Any] = {"retries": {"few": retry}}
    inbound: dict[str, str] = {"retry": "few"}
    if timeout:
        policies["timeouts"] = {"short": timeout}
        inbound["timeout"] = "short"
    document = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": "pubsub-policy"},
        "spec": {"policies": policies, "targets": {"components": {"pubsub": {"inbound": inbound}}}},
    }
    return yaml.safe_dump(document)


async def test_inbound_retries_follow_the_resiliency_policy(broker: Broker, app: SubscriberApp) -> None:
    topic, dead = broker.topic(), broker.topic()
    (broker.resources / "resiliency.yaml").write_text(
        resiliency_yaml({"policy": "constant", "duration": "100ms", "maxRetries": 2})
    )
    app.subscriptions = [subscription(topic, "/a", deadLetterTopic=dead), subscription(dead, "/dead")]
    app.answers["/a"] = [(500, b"")]
    async with running_sidecar(broker.resources, app_port=app.port) as sidecar:
        await until_subscribed(sidecar, 2)
        await publish(sidecar, topic, b"x")
        await app.wait_for("/dead", 1)
        await settle()
    assert len(app.at("/a")) == 3  # first attempt + maxRetries
    assert len(app.at("/dead")) == 1


async def test_an_app_that_times_out_is_retried(broker: Broker, app: SubscriberApp) -> None:
    topic, dead = broker.topic(), broker.topic()
    (broker.resources / "resiliency.yaml").write_text(
        resiliency_yaml({"policy": "constant", "duration": "50ms", "maxRetries": 1}, "200ms")
    )
    app.subscriptions = [subscription(topic, "/slow", deadLetterTopic=dead), subscription(dead, "/dead")]
    app.delay["/slow"] = 1.0
    async with running_sidecar(broker.resources, app_port=app.port) as sidecar:
        await until_subscribed(sidecar, 2)
        await publish(sidecar, topic, b"x")
        await app.wait_for("/dead", 1)
    assert len(app.at("/slow")) == 2


async def test_without_dead_letter_a_failed_message_is_redelivered_until_accepted(
    broker: Broker, app: SubscriberApp
) -> None:
    topic = broker.topic()
    app.subscriptions = [subscription(topic, "/flaky")]
    app.answers["/flaky"] = [(500, b""), (500, b""), (500, b""), (200, b"")]
    async with running_sidecar(broker.resources, app_port=app.port) as sidecar:
        await until_subscribed(sidecar, 1)
        await publish(sidecar, topic, b"x")
        await app.wait_for("/flaky", 4)
        await settle()
    assert len(app.at("/flaky")) == 4


async def test_routing_rules_use_cel(broker: Broker, app: SubscriberApp) -> None:
    topic = broker.topic()
    app.subscriptions = [
        {
            "pubsubname": "pubsub",
            "topic": topic,
            "routes": {
                "rules": [
                    {"match": 'event.data.kind == "widget"', "path": "/widgets"},
                    {"match": "event.data.size > 10", "path": "/big"},
                ],
                "default": "/other",
            },
        }
    ]
    async with running_sidecar(broker.resources, app_port=app.port) as sidecar:
        await until_subscribed(sidecar, 1)
        for body in ({"kind": "widget", "size": 50}, {"kind": "gadget", "size": 50}, {"kind": "gadget", "size": 1}, {}):
            await publish(sidecar, topic, orjson.dumps(body), "application/json")
        await app.wait_for("/other", 2)
        await app.wait_for("/widgets", 1)
        await app.wait_for("/big", 1)
    assert [d.event["data"] for d in app.at("/widgets")] == [{"kind": "widget", "size": 50}]
    assert [d.event["data"] for d in app.at("/big")] == [{"kind": "gadget", "size": 50}]


async def test_declarative_subscriptions(broker: Broker, app: SubscriberApp) -> None:
    v2, v1 = broker.topic(), broker.topic()
    (broker.resources / "subscriptions.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: dapr.io/v2alpha1
            kind: Subscription
            metadata: {{name: v2}}
            spec:
              pubsubname: pubsub
              topic: {v2}
              routes:
                rules:
                  - match: event.type == "com.dapr.event.sent"
                    path: /declared-v2
                default: /never
            ---
            apiVersion: dapr.io/v1alpha1
            kind: Subscription
            metadata: {{name: v1}}
            spec:
              pubsubname: pubsub
              topic: {v1}
              route: /declared-v1
            ---
            apiVersion: dapr.io/v1alpha1
            kind: Subscription
            metadata: {{name: other-app}}
            spec: {{pubsubname: pubsub, topic: {v1}, route: /not-mine}}
            scopes: [someone-else]
            """
        )
    )
    async with running_sidecar(broker.resources, app_port=app.port) as sidecar:
        await until_subscribed(sidecar, 2)
        await publish(sidecar, v2, b"a")
        await publish(sidecar, v1, b"b")
        await app.wait_for("/declared-v2", 1)
        await app.wait_for("/declared-v1", 1)
        kinds = {s["type"] for s in (await sidecar.client.get("/v1.0/metadata")).json()["subscriptions"]}
    assert kinds == {"DECLARATIVE"}
    assert not app.at("/never") and not app.at("/not-mine")


async def test_bulk_subscribe(broker: Broker, app: SubscriberApp) -> None:
    topic = broker.topic()
    app.subscriptions = [
        subscription(topic, "/bulk", bulkSubscribe={"enabled": True, "maxMessagesCount": 5, "maxAwaitDurationMs": 200})
    ]
    retried: set[str] = set()

    def answer(body: bytes) -> tuple[int, bytes]:
        envelope = orjson.loads(body)
        statuses = []
        for entry in envelope["entries"]:
            data = entry["event"]["data"]
            status = "SUCCESS"
            if data == "retry-once" and data not in retried:
                retried.add(data)
                status = "RETRY"
            statuses.append({"entryId": entry["entryId"], "status": status})
        return 200, orjson.dumps({"statuses": statuses})

    app.responders["/bulk"] = answer
    async with running_sidecar(broker.resources, app_port=app.port) as sidecar:
        await until_subscribed(sidecar, 1)
        for n in range(6):
            await publish(sidecar, topic, f"m{n}".encode())
        await publish(sidecar, topic, b"retry-once")
        async with asyncio.timeout(15):
            while sum(1 for d in app.at("/bulk") for e in d.event["entries"] if e["event"]["data"] == "retry-once") < 2:
                await asyncio.sleep(0.05)
        await settle()
    envelopes = [d.event for d in app.at("/bulk")]
    assert all(d.headers["content-type"] == "application/json" for d in app.at("/bulk"))
    assert all(e["type"] == "com.dapr.event.sent.bulk" and e["topic"] == topic for e in envelopes)
    assert all(len(e["entries"]) <= 5 for e in envelopes)
    data = [entry["event"]["data"] for e in envelopes for entry in e["entries"]]
    assert sorted(data) == sorted([f"m{n}" for n in range(6)] + ["retry-once", "retry-once"])


# -- the gRPC front: PublishEvent, and the streaming subscription as the SDKs' subscribe() holds it -----------


async def test_grpc_publish_and_streaming_subscription(broker: Broker) -> None:
    topic = broker.topic()
    async with running_sidecar(broker.resources, grpc=True) as sidecar, grpc_front(sidecar) as front:
        stream = front.dapr.SubscribeTopicEventsAlpha1()
        initial = pubsub_pb2.SubscribeTopicEventsRequestInitialAlpha1(pubsub_name="pubsub", topic=topic)
        await stream.write(pubsub_pb2.SubscribeTopicEventsRequestAlpha1(initial_request=initial))
        assert (await stream.read()).HasField("initial_response")  # first, before any event
        for n in (1, 2):
            await front.dapr.PublishEvent(
                pubsub_pb2.PublishEventRequest(
                    pubsub_name="pubsub", topic=topic, data=orjson.dumps({"n": n}), data_content_type="application/json"
                )
            )

        async def answer(event_id: str, status: int) -> None:
            processed = pubsub_pb2.SubscribeTopicEventsRequestProcessedAlpha1(
                id=event_id,
                status=appcallback_pb2.TopicEventResponse(status=status),  # type: ignore[arg-type]
            )
            await stream.write(pubsub_pb2.SubscribeTopicEventsRequestAlpha1(event_processed=processed))

        seen: list[tuple[int, str]] = []
        retried: set[str] = set()
        async with asyncio.timeout(30):
            while sorted({n for n, _ in seen}) != [1, 2] or len(seen) < 3:
                event = (await stream.read()).event_message
                assert (event.topic, event.pubsub_name, event.data_content_type) == (
                    topic,
                    "pubsub",
                    "application/json",
                )
                seen.append((orjson.loads(event.data)["n"], event.id))
                if orjson.loads(event.data)["n"] == 1 and event.id not in retried:
                    retried.add(event.id)
                    await answer(event.id, appcallback_pb2.TopicEventResponse.RETRY)  # comes back
                else:
                    await answer(event.id, appcallback_pb2.TopicEventResponse.SUCCESS)
        first_ids = [event_id for n, event_id in seen if n == 1]
        assert len(first_ids) == 2 and first_ids[0] == first_ids[1]  # RETRY: the same event once more
        stream.cancel()
