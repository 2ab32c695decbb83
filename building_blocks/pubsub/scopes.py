"""Topic scoping from component metadata (Dapr's ``allowedTopics``, ``publishingScopes``,
``subscriptionScopes``, ``protectedTopics``), enforced by the runtime, not the broker."""

from __future__ import annotations

from building_blocks.component import Metadata

__all__ = ("TopicScopes",)


def _topics(text: str) -> set[str]:
    return {t.strip().lower() for t in text.replace(" ", "").split(",") if t.strip()}


def _per_app(text: str) -> dict[str, set[str]]:
    scopes: dict[str, set[str]] = {}
    for entry in text.replace(" ", "").split(";"):
        if not entry:
            continue
        app, _, topics = entry.partition("=")
        scopes[app.lower()] = _topics(topics)
    return scopes


class TopicScopes:
    """Which topics an app may publish to or subscribe to; names match case-insensitively."""

    def __init__(self, metadata: Metadata) -> None:
        self.allowed = _topics(metadata.get("allowedTopics", ""))
        self.protected = _topics(metadata.get("protectedTopics", ""))
        self.publishing = _per_app(metadata.get("publishingScopes", ""))
        self.subscribing = _per_app(metadata.get("subscriptionScopes", ""))

    def _allowed(self, scopes: dict[str, set[str]], app_id: str, topic: str) -> bool:
        topic = topic.lower()
        if self.allowed and topic not in self.allowed:
            return False
        app_scope = scopes.get(app_id.lower())
        if app_scope is None:
            return topic not in self.protected
        return topic in app_scope

    def can_publish(self, app_id: str, topic: str) -> bool:
        return self._allowed(self.publishing, app_id, topic)

    def can_subscribe(self, app_id: str, topic: str) -> bool:
        return self._allowed(self.subscribing, app_id, topic)
