"""Routing rules see only the parts of the event their CEL expression can reach, and decide exactly as they
would on the whole event."""

from __future__ import annotations

from typing import Any

import cel
import pytest

from building_blocks.pubsub.subscriptions import Rule, needs_of

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
