"""The Pub/sub building block: Dapr's publish rules (CloudEvents, scoping, raw payloads, TTL, bulk) in
front of the brokers, and the subscriptions that deliver to the app."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from building_blocks.block import Block
from building_blocks.component import ComponentContext
from building_blocks.errors import (
    BulkEventsInvalid,
    BulkPublishFailed,
    EventInvalid,
    LayottoError,
    Operation,
    OperationFailed,
    PublishMetadataInvalid,
    TopicForbidden,
)
from building_blocks.pubsub.base import Feature, PublishRequest, PubSub
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
_MISMATCH = "mismatch between contentType and event"


def _raw_payload(pubsub: str, topic: str, metadata: Mapping[str, str]) -> bool:
    value = metadata.get("rawPayload")
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise PublishMetadataInvalid(pubsub, topic, f"rawPayload value must be a valid boolean: actual is '{value}'")


def _expiration(metadata: Mapping[str, str]) -> str | None:
    raw = metadata.get("ttlInSeconds")
    if not raw:
        return None
    try:
        seconds = int(raw)
    except ValueError:
        return None
    if seconds <= 0:
        return None
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entry_bytes(event: Any, content_type: str) -> bytes | None:
    """An entry's event as bytes per its content type, or None when they don't fit together."""
    base = content_type.split(";", 1)[0].strip().lower()
    if base == "application/octet-stream":
        if not isinstance(event, str):
            return None
        try:
            return base64.b64decode(event, validate=True)
        except binascii.Error:
            return None
    if base.startswith("text/") or base == "application/xml":
        return event.encode() if isinstance(event, str) else None
    if base in ("application/json", CLOUDEVENT_CONTENT_TYPE) or base.endswith("+json"):
        return orjson.dumps(event)
    return None


class PubSubBlock(Block[PubSub]):
    """All loaded pub/sub components, publishing to them and the app's subscriptions."""

    kind = "pubsub"
    type_prefix = "pubsub"
    component_base = PubSub

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._scopes: dict[str, TopicScopes] = {}
        self._groups: dict[str, str] = {}
        self.subscriptions: list[SubscriptionSpec] = []
        self._subscribers: list[TopicSubscriber] = []
        self._paused: list[TopicSubscriber] = []

    def add(self, component: PubSub, where: str) -> None:
        super().add(component, where)
        self._scopes[component.name] = TopicScopes(component.metadata)
        self._groups[component.name] = component.metadata.get("consumerID") or self.context.app_id or component.name

    # -- publishing --------------------------------------------------------------------------------------------

    def _publishable(self, name: str, topic: str) -> PubSub:
        pubsub = self.component(name)
        if not self._scopes[name].can_publish(self.context.app_id, topic):
            raise TopicForbidden(name, topic, self.context.app_id)
        return pubsub

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
                event = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
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
        return orjson.dumps(event)

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
        try:
            await pubsub.publish(PublishRequest(topic, data, metadata, content_type))
        except Exception as exc:
            if not isinstance(exc, LayottoError):
                log.exception("publishing to %s/%s failed unexpectedly", name, topic)
            raise OperationFailed(Operation.PUBSUB_PUBLISH, name, exc, topic) from exc

    async def bulk_publish(
        self, name: str, topic: str, body: bytes, metadata: Mapping[str, str], trace: Mapping[str, str]
    ) -> None:
        """Dapr's bulk publish body; raises ``BulkPublishFailed`` listing the entries that failed."""
        pubsub = self._publishable(name, topic)
        try:
            entries = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            entries = exc
        if not isinstance(entries, list):
            detail = entries if isinstance(entries, Exception) else "the body must be a JSON array"
            message = f"error when unmarshaling the request for topic {topic} pubsub {name}: {detail}"
            raise BulkEventsInvalid(name, topic, "unmarshal", message)
        ids: list[str] = []
        requests: list[PublishRequest] = []
        for entry in entries:
            entry_id = entry.get("entryId") if isinstance(entry, dict) else None
            if not isinstance(entry_id, str) or not entry_id or entry_id in ids:
                message = f"error: entryId is duplicated or not present for entry: {orjson.dumps(entry).decode()}"
                raise BulkEventsInvalid(name, topic, "entry", message)
            ids.append(entry_id)
            content_type = str(entry.get("contentType") or "")
            data = _entry_bytes(entry.get("event"), content_type)
            if data is None:
                message = (
                    f"error when marshaling the event for entry {entry_id}: mismatch between contentType and event"
                )
                raise BulkEventsInvalid(name, topic, "envelope", message)
            entry_metadata = {**metadata, **{str(k): str(v) for k, v in (entry.get("metadata") or {}).items()}}
            envelope = self._envelope(pubsub, topic, data, content_type, entry_metadata, trace)
            requests.append(PublishRequest(topic, envelope, entry_metadata, content_type))
        if not requests:
            return
        outcomes = await pubsub.bulk_publish(requests)
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
            pubsub = self.components.get(spec.pubsub)
            if pubsub is None:
                log.warning("subscription to %s/%s: no such pubsub; inactive", spec.pubsub, spec.topic)
                continue
            if not self._scopes[spec.pubsub].can_subscribe(self.context.app_id, spec.topic):
                log.warning("subscription to %s/%s refused by the component's scopes", spec.pubsub, spec.topic)
                continue
            subscriber = TopicSubscriber(
                spec, pubsub, self._groups[spec.pubsub], postman, resiliency.inbound(spec.pubsub)
            )
            await subscriber.start()
            self._subscribers.append(subscriber)
            log.info("subscribed to %s/%s (%s)", spec.pubsub, spec.topic, spec.kind.lower())

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
