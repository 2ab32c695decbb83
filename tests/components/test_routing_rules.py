"""Routing rules see only the parts of the event their CEL expression can reach, and decide exactly as they
would on the whole event."""

from __future__ import annotations

from typing import Any

import cel
import pytest

from building_blocks.pubsub.subscriptions import MAX_CEL_DEPTH, MAX_CEL_NODES, Rule, SubscriptionSpec, needs_of

EVENTS: list[dict[str, Any]] = [
    {"type": "order", "source": "shop", "data": {"kind": "huge", "items": [1, 2, 3], "m": {"a": 1, "b": 2}}},
    {"type": "other", "data": {"kind": "small", "items": [], "m": {}}},
    {"type": "order", "data": [1, 2]},
    {"type": "order"},
]
EXPRESSIONS = [
    'event.type == "order"',
    'event.data.kind == "huge" && event.type == "order"',
    "event.data.items.size() > 2",
    "event.data.m.size() == 2",
    "has(event.data.m) && event.data.m.a == 1",
    'event["source"] == "shop"',
    "size(event) > 2",
    "event.data.items.exists(i, i > 2)",
    'has(event.data) && event . data . kind == "small"',
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_a_rule_decides_as_on_the_whole_event(expression: str) -> None:
    rule, whole = Rule.compile(expression, "/p"), cel.compile(expression)
    for event in EVENTS:
        try:
            expected = whole.execute({"event": event}) is True
        except Exception:
            expected = False
        assert rule.matches(event) is expected, (expression, event)


def test_only_reachable_fields_are_kept() -> None:
    assert needs_of('event.type == "x"') == {"type": None}
    assert needs_of("event.data.m.size() > 1 && event.data.kind == 1") == {"data": {"m": None, "kind": None}}
    assert needs_of("has(event.data) && event.data.x == 1") == {"data": None}
    assert needs_of('event["type"] == "x"') is None
    assert needs_of('events.x == 1 || event.id == "1"') == {"id": None}


def spec(*rules: tuple[str, str], default: str = "/default") -> SubscriptionSpec:
    compiled = (*(Rule.compile(match, path) for match, path in rules), Rule.compile("", default))
    return SubscriptionSpec("pubsub", "t", compiled)


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_a_subscription_routes_as_its_rules_one_by_one(expression: str) -> None:
    subscription = spec(('event.type == "other"', "/other"), (expression, "/p"))
    for event in EVENTS:
        expected = (
            "/other" if event["type"] == "other" else "/p" if Rule.compile(expression, "/p").matches(event) else None
        )
        assert subscription.route(event) == (expected or "/default"), (expression, event)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_a_rule_reading_parts_too_deep_for_cel_does_not_match_and_others_still_route() -> None:
    # 9,990 levels (Dapr takes 10,000) made the CEL library overflow its stack and kill the process.
    event = {"type": "order", "data": nested(9_990)}
    assert not Rule.compile("has(event.data.a)", "/p").matches(event)
    subscription = spec(("has(event.data.a)", "/deep"), ('event.type == "order"', "/typed"))
    assert subscription.route(event) == "/typed"
    shallow = {"type": "order", "data": nested(MAX_CEL_DEPTH - 2)}
    assert subscription.route(shallow) == "/deep"  # within the bound the deep rule decides as usual


def test_a_rule_reading_a_part_too_large_for_cel_does_not_match_and_the_event_takes_the_default() -> None:
    small = {"type": "order", "data": {"kind": "huge", "items": list(range(MAX_CEL_NODES // 2))}}
    large = {"type": "order", "data": {"kind": "huge", "items": list(range(MAX_CEL_NODES))}}
    subscription = spec(("size(event.data.items) > 0", "/items"), ('event.data.kind == "small"', "/small"))
    assert subscription.route(small) == "/items"
    assert subscription.route(large) == "/default"
    # A rule reading a small part of the same large event still converts only that part.
    assert spec(('event.data.kind == "huge"', "/kind")).route(large) == "/kind"
