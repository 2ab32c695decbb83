"""The Pub/sub building block: Dapr's publish rules (CloudEvents, scoping, raw payloads, TTL, bulk) in
front of the brokers, and the subscriptions that deliver to the app."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from building_blocks import jsoncodec
from building_blocks._common.cooperative import pause
from building_blocks.block import Block
from building_blocks.component import ComponentContext
from building_blocks.errors import (
    BulkEventsInvalid,
    BulkPublishFailed,
    EventInvalid,
    Operation,
    PublishMetadataInvalid,
    TopicForbidden,
)
from building_blocks.keyprefix import KeyPrefixer
from building_blocks.pubsub.base import BulkPublishEntry, Feature, PublishRequest, PubSub
from building_blocks.pubsub.cloudevents import complete_user_event, new_event
from building_blocks.pubsub.scopes import TopicScopes
from building_blocks.pubsub.subscriber import Postman, TopicSubscriber
from building_blocks.pubsub.subscriptions import SubscriptionSpec
from building_blocks.resiliency import Resiliency

__all__ = ("PubSubBlock",)

log = logging.getLogger("layotto.pubsub")
CLOUDEVENT_CONTENT_TYPE = "application/cloudevents+json"
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_CLOUDEVENT_OVERRIDE = "cloudevent."
#: Why an event does not fit its entry's content type, in Dapr's words.
MISMATCH = "mismatch between contentType and event"
_MAX_DURATION_NS = 2**63 - 1  # Go's time.Duration
_GO_INT = re.compile(r"[+-]?[0-9]+")
_GO_DURATION = re.compile(r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def _raw_payload(pubsub: str, topic: str, metadata: Mapping[str, str]) -> bool:
    value = metadata.get("rawPayload")
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise PublishMetadataInvalid(pubsub, topic, f"rawPayload value must be a valid boolean: actual is '{value}'")


def _duration_ns(text: str) -> int | None:
    """Go's ``time.ParseDuration`` in nanoseconds; None when Go refuses the text (or it overflows)."""
    if text in ("0", "+0", "-0"):
        return 0
    if not _GO_DURATION.fullmatch(text):
        return None
    total = sum(float(number) * _UNIT_NS[unit] for number, unit in _DURATION_PART.findall(text.lstrip("+-")))
    if total > _MAX_DURATION_NS:
        return None
    return -int(total) if text.startswith("-") else int(total)


def _ttl_ns(metadata: Mapping[str, str]) -> int | None:
    """The message TTL as Dapr reads it (``metadata.TryGetTTL``): ``ttl`` or ``ttlInSeconds``, a Go duration
    or a positive number of seconds (capped at Go's longest duration). Dapr ignores a value it cannot parse,
    so None for those as for none."""
    lowered = {name.lower(): value for name, value in metadata.items()}
    raw = lowered.get("ttl") or lowered.get("ttlinseconds")
    if not raw:
        return None
    duration = _duration_ns(raw)
    if duration is not None:
        return max(duration, 0)
    if not _GO_INT.fullmatch(raw) or not 0 < int(raw) < 2**63:
        return None
    return min(int(raw) * 10**9, _MAX_DURATION_NS)


def _expiration(metadata: Mapping[str, str]) -> str | None:
    ttl = _ttl_ns(metadata)
    if ttl is None:
        return None
    return (datetime.now(UTC) + timedelta(microseconds=ttl // 1000)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class _Settings:
    """The block's settings for one pub/sub: its topic scopes, and the consumer group its subscriptions use."""

    scopes: TopicScopes
    group: str


class PubSubBlock(Block[PubSub, _Settings]):
    """All loaded pub/sub components, publishing to them and the app's subscriptions."""

    kind = "pubsub"
    type_prefix = "pubsub"
    component_base = PubSub

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self.subscriptions: list[SubscriptionSpec] = []
        self._subscribers: list[TopicSubscriber] = []
        self._paused: list[TopicSubscriber] = []

    def settings(self, component: PubSub, prefixer: KeyPrefixer) -> _Settings:
        metadata = component.metadata
        group = metadata.get("consumerID") or self.context.app_id or component.name
        return _Settings(TopicScopes(metadata), group)

    # -- publishing --------------------------------------------------------------------------------------------

    def _publishable(self, name: str, topic: str) -> PubSub:
        entry = self.entry(name)
        if not entry.settings.scopes.can_publish(self.context.app_id, topic):
            raise TopicForbidden(name, topic, self.context.app_id)
        return entry.component

    def _envelope(
        self,
        pubsub: PubSub,
        topic: str,
        body: bytes,
        content_type: str,
        metadata: Mapping[str, str],
        trace: Mapping[str, str],
    ) -> bytes:
        name = pubsub.name
        if _raw_payload(name, topic, metadata):
            return body
        if content_type.split(";", 1)[0].strip().lower() == CLOUDEVENT_CONTENT_TYPE:
            try:
                event = jsoncodec.loads(body)
            except ValueError as exc:
                raise EventInvalid(name, topic, str(exc)) from None
            if not isinstance(event, dict):
                raise EventInvalid(name, topic, "a CloudEvent must be a JSON object")
            event = complete_user_event(event, topic=topic, pubsub=name, trace=trace)
        else:
            overrides = {
                k[len(_CLOUDEVENT_OVERRIDE) :]: v for k, v in metadata.items() if k.startswith(_CLOUDEVENT_OVERRIDE)
            }
            event = new_event(
                body,
                content_type,
                topic=topic,
                pubsub=name,
                source=self.context.app_id,
                trace=trace,
                overrides=overrides,
            )
        if Feature.MESSAGE_TTL not in pubsub.features and (expiration := _expiration(metadata)):
            event["expiration"] = expiration
        return jsoncodec.dumps(event)

    async def publish(
        self,
        name: str,
        topic: str,
        body: bytes,
        content_type: str,
        metadata: Mapping[str, str],
        trace: Mapping[str, str],
    ) -> None:
        """Publish one message as Dapr does (envelope unless raw); errors are the block's domain errors."""
        pubsub = self._publishable(name, topic)
        data = self._envelope(pubsub, topic, body, content_type, metadata, trace)
        request = PublishRequest(topic, data, metadata, content_type)
        if self.layers:
            return await self.operation(Operation.PUBSUB_PUBLISH, name, topic, pubsub.publish, request)
        try:  # the hot path: inline, under the one rule (Block.fail)
            await pubsub.publish(request)
        except Exception as exc:
            self.fail(Operation.PUBSUB_PUBLISH, name, topic, exc)

    def check_publishable(self, name: str, topic: str) -> None:
        """Raise as Dapr does, before the body is read, when ``name`` is unknown or may not publish ``topic``."""
        self._publishable(name, topic)

    async def bulk_publish(
        self,
        name: str,
        topic: str,
        entries: Sequence[BulkPublishEntry],
        metadata: Mapping[str, str],
        trace: Mapping[str, str],
    ) -> None:
        """Dapr's bulk publish; raises ``BulkPublishFailed`` listing the entries that failed.

        A 4 MiB body holds ~57,000 entries at ~30 µs each: the loop is yielded every ``SLICE`` entries."""
        pubsub = self._publishable(name, topic)
        ids: list[str] = []
        seen: set[str] = set()
        requests: list[PublishRequest] = []
        for done, entry in enumerate(entries):
            await pause(done)
            if entry.event is None:
                message = f"error when marshalling cloud event envelope for topic {topic} pubsub {name}: {MISMATCH}"
                raise BulkEventsInvalid(name, topic, "envelope", message)
            entry_id = entry.entry_id
            if not entry_id or entry_id in seen:
                message = (
                    f"error marshaling events to bytes for topic {topic} pubsub {name}. "
                    "error: entryId is duplicated or not present for entry"
                )
                raise BulkEventsInvalid(name, topic, "entry", message)
            ids.append(entry_id)
            seen.add(entry_id)
            entry_metadata = {**metadata, **entry.metadata}
            envelope = self._envelope(pubsub, topic, entry.event, entry.content_type, entry_metadata, trace)
            requests.append(PublishRequest(topic, envelope, entry_metadata, entry.content_type))
        if not requests:
            return
        outcomes = await self.operation(Operation.PUBSUB_PUBLISH, name, topic, pubsub.bulk_publish, requests)
        failures = [(entry_id, str(error)) for entry_id, error in zip(ids, outcomes, strict=True) if error is not None]
        if failures:
            raise BulkPublishFailed(name, topic, failures)

    # -- subscriptions -----------------------------------------------------------------------------------------

    async def subscribe_all(self, specs: Iterable[SubscriptionSpec], postman: Postman, resiliency: Resiliency) -> None:
        """Start every subscription (the first one per pubsub/topic wins); unknown pubsubs stay listed, inactive."""
        seen: set[tuple[str, str]] = set()
        for spec in specs:
            if (spec.pubsub, spec.topic) in seen:
                continue
            seen.add((spec.pubsub, spec.topic))
            self.subscriptions.append(spec)
            entry = self.entries.get(spec.pubsub)
            if entry is None:
                log.warning("subscription to %s/%s: no such pubsub; inactive", spec.pubsub, spec.topic)
                continue
            if not entry.settings.scopes.can_subscribe(self.context.app_id, spec.topic):
                log.warning("subscription to %s/%s refused by the component's scopes", spec.pubsub, spec.topic)
                continue
            subscriber = TopicSubscriber(
                spec, entry.component, entry.settings.group, postman, resiliency.inbound(spec.pubsub)
            )
            await subscriber.start()
            self._subscribers.append(subscriber)
            log.info("subscribed to %s/%s (%s)", spec.pubsub, spec.topic, spec.kind.lower())

    async def subscribe_stream(
        self, spec: SubscriptionSpec, postman: Postman, resiliency: Resiliency
    ) -> TopicSubscriber:
        """A subscription a front holds open (Dapr's streaming subscriptions): delivered through ``postman``,
        listed while it lives; ``end_stream`` ends it. The pubsub must exist and let this app subscribe."""
        entry = self.entry(spec.pubsub)
        if not entry.settings.scopes.can_subscribe(self.context.app_id, spec.topic):
            raise TopicForbidden(spec.pubsub, spec.topic, self.context.app_id)
        subscriber = TopicSubscriber(
            spec, entry.component, entry.settings.group, postman, resiliency.inbound(spec.pubsub)
        )
        await subscriber.start()
        self.subscriptions.append(spec)
        return subscriber

    async def end_stream(self, subscriber: TopicSubscriber) -> None:
        with contextlib.suppress(ValueError):
            self.subscriptions.remove(subscriber.spec)
        await subscriber.close()

    async def close_subscriptions(self) -> None:
        """Stop pulling, let in-flight deliveries finish and be acknowledged."""
        subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            try:
                await subscriber.close()
            except Exception:
                log.exception("closing the subscription to %s/%s failed", subscriber.spec.pubsub, subscriber.spec.topic)

    async def pause_subscriptions(self) -> None:
        """Stop delivering (the app is unhealthy): close the active subscriptions, keep them for resuming."""
        if self._subscribers:
            self._paused.extend(self._subscribers)
            await self.close_subscriptions()
            log.info("subscriptions paused: the app is unhealthy")

    async def resume_subscriptions(self) -> None:
        """Restart the subscriptions ``pause_subscriptions`` stopped."""
        paused, self._paused = self._paused, []
        for old in paused:
            subscriber = TopicSubscriber(old.spec, old.pubsub, old.group, old.postman, old.policy)
            await subscriber.start()
            self._subscribers.append(subscriber)
        if paused:
            log.info("subscriptions resumed: the app is healthy")

    @property
    def active(self) -> Sequence[TopicSubscriber]:
        return tuple(self._subscribers)
