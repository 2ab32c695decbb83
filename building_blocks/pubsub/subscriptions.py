"""Subscriptions: from the app's ``GET /dapr/subscribe`` answer and from ``kind: Subscription`` YAML.

A subscription routes each event to the path of the first rule whose CEL ``match`` holds for the
CloudEvent (variable ``event``); an empty match always holds. Rules are ``routes.rules`` in order, then
``routes.default`` (or v1's ``route``).

The CEL runtime converts the whole ``event`` into its own values before evaluating, holding the GIL: a
4 MiB event takes most of a second, during which the sidecar answers nothing. So a rule is given only the
parts of the event its expression can reach: the field chains after ``event`` (``event.data.order.id``
keeps ``data.order.id`` whole; an index, a method call or a bare ``event`` keep the object they apply to).
The chains are found by a scan that may over-approximate (a chain inside a string literal), never miss one.

The parts all rules of a subscription need are converted once per event (one ``cel.Context`` shared by the
rules), and only if they are small enough: at most ``MAX_CEL_NODES`` JSON values (20,000 convert in ~20 ms,
a whole 4 MiB event in ~0.6 s) nested at most ``MAX_CEL_DEPTH`` levels (the CEL library crashes the process
with a stack overflow near 5,000). Past either bound the CEL rules do not match, as for any rule whose
evaluation fails, and the event takes the default route (or none: dead-lettered). Events up to Dapr's
10,000 levels are still delivered; only a rule reading a part that large or that deep cannot route on it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from building_blocks._common.extras import missing_extra
from building_blocks.errors import SpecError

__all__ = (
    "MAX_CEL_DEPTH",
    "MAX_CEL_NODES",
    "BulkSettings",
    "Rule",
    "SubscriptionSpec",
    "from_declarations",
    "from_programmatic",
)

log = logging.getLogger(__name__)

# ``event`` (not a field of something else), the ``.field`` chain after it, and whether a call follows.
_EVENT_CHAIN = re.compile(r"(?<![\w.])event(?!\w)((?:\s*\.\s*[A-Za-z_]\w*)*)(\s*\()?")
_FIELD = re.compile(r"[A-Za-z_]\w*")

# The parts of an event a rule reads: field name -> its own parts, None for all of it.
Needs = dict[str, "Needs | None"]

MAX_CEL_NODES = 20_000
MAX_CEL_DEPTH = 1_000


@dataclass(frozen=True, slots=True)
class Rule:
    match: str
    path: str
    program: Any = field(default=None, compare=False, repr=False)
    needs: Needs | None = field(default=None, compare=False, repr=False)

    @classmethod
    def compile(cls, match: str, path: str) -> Rule:
        path = path if path.startswith("/") else "/" + path
        if not match.strip():
            return cls("", path)
        try:
            import cel  # only apps with routing rules pay for the CEL runtime (and its start-up cost)
        except ImportError as exc:
            raise SpecError(f"routing rule '{match}' {missing_extra(exc) or exc}") from None
        try:
            return cls(match, path, cel.compile(match), needs_of(match))
        except ValueError as exc:
            raise SpecError(f"invalid routing rule match '{match}': {' '.join(str(exc).split())}") from None

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.program is None:
            return True
        context = cel_context(event, self.needs)
        return context is not None and self.holds(context)

    def holds(self, context: Any) -> bool:
        """Whether the match holds for ``context`` (a ``cel.Context`` from ``cel_context``)."""
        try:
            return self.program.execute(context) is True
        except Exception:  # a missing field or a type error means "does not match", as in Dapr
            return False


def cel_context(event: Mapping[str, Any], needs: Needs | None, quiet: bool = False) -> Any:
    """A ``cel.Context`` holding the parts of ``event`` in ``needs``; None when they are past the bounds."""
    pruned = _pruned(event, needs)
    if not _within_bounds(pruned):
        if quiet:
            return None
        log.warning(
            "routing rule skipped for event %s: the parts it reads exceed %d values or %d levels",
            event.get("id"),
            MAX_CEL_NODES,
            MAX_CEL_DEPTH,
        )
        return None
    import cel

    return cel.Context({"event": pruned})


def _within_bounds(value: Any) -> bool:
    """At most ``MAX_CEL_NODES`` values nested at most ``MAX_CEL_DEPTH`` levels; stops at the first excess,
    so the walk itself costs at most the bound."""
    budget = MAX_CEL_NODES
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0 or depth > MAX_CEL_DEPTH:
            return False
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return True


def needs_of(expression: str) -> Needs | None:
    """The parts of ``event`` that ``expression`` can read (None: all of it)."""
    needs: Needs = {}
    for chain, call in _EVENT_CHAIN.findall(expression):
        fields = _FIELD.findall(chain)
        if call and fields:
            fields.pop()  # ``event.data.items.size()``: ``size`` is a method of ``items``
        if not fields:
            return None
        node = needs
        for name in fields[:-1]:
            child = node.setdefault(name, {})
            if child is None:
                break  # an enclosing field is needed whole already
            node = child
        else:
            node[fields[-1]] = None
    return needs


def merged_needs(first: Needs | None, second: Needs | None) -> Needs | None:
    """What two rules read together."""
    if first is None or second is None:
        return None
    merged = dict(first)
    for name, part in second.items():
        merged[name] = merged_needs(merged[name], part) if name in merged else part
    return merged


def _pruned(value: Any, needs: Needs | None) -> Any:
    if needs is None or not isinstance(value, Mapping):
        return value
    return {name: _pruned(value[name], part) for name, part in needs.items() if name in value}


@dataclass(frozen=True, slots=True)
class BulkSettings:
    max_messages: int = 100
    max_await_seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    pubsub: str
    topic: str
    rules: tuple[Rule, ...]
    dead_letter_topic: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    bulk: BulkSettings | None = None
    kind: str = "PROGRAMMATIC"
    needs: Needs | None = field(init=False, compare=False, repr=False)  # what the rules read, together

    @property
    def raw_payload(self) -> bool:
        return self.metadata.get("rawPayload", "").lower() == "true"

    def route(self, event: Mapping[str, Any]) -> str | None:
        """The path of the first rule that matches, or None. The event is converted for CEL once, for all
        the rules, and only when a rule with a match is reached."""
        context: Any = None
        converted = False
        for rule in self.rules:
            if rule.program is None:
                return rule.path
            if not converted:
                context, converted = cel_context(event, self.needs, quiet=True), True
            # Past the bounds together, each rule is tried on its own parts (one greedy rule spoils no other).
            if rule.holds(context) if context is not None else rule.matches(event):
                return rule.path
        return None

    def __post_init__(self) -> None:
        needs: Needs | None = {}
        for rule in self.rules:
            if rule.program is not None:
                needs = merged_needs(needs, rule.needs)
        object.__setattr__(self, "needs", needs)


def _lower_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in raw.items()}


def _parse(raw: Mapping[str, Any], kind: str) -> SubscriptionSpec | None:
    fields = _lower_keys(raw)
    pubsub, topic = str(fields.get("pubsubname") or ""), str(fields.get("topic") or "")
    if not pubsub or not topic:
        raise SpecError(f"subscription {dict(raw)!r} needs pubsubname and topic")
    routes = _lower_keys(fields.get("routes") or {})
    rules = [Rule.compile(str(r.get("match") or ""), str(r.get("path") or "")) for r in routes.get("rules") or []]
    default = routes.get("default") or fields.get("route")
    if default:
        rules.append(Rule.compile("", str(default)))
    if not rules:
        log.warning("subscription to %s/%s has no route; ignored", pubsub, topic)
        return None
    bulk_raw = _lower_keys(fields.get("bulksubscribe") or {})
    bulk = None
    if bulk_raw.get("enabled") in (True, "true", "True"):
        bulk = BulkSettings(
            max_messages=int(bulk_raw.get("maxmessagescount") or 100),
            max_await_seconds=int(bulk_raw.get("maxawaitdurationms") or 1000) / 1000,
        )
    metadata = {str(k): str(v) for k, v in (fields.get("metadata") or {}).items()}
    return SubscriptionSpec(pubsub, topic, tuple(rules), str(fields.get("deadlettertopic") or ""), metadata, bulk, kind)


def from_programmatic(answer: Any) -> list[SubscriptionSpec]:
    """The subscriptions in an app's ``/dapr/subscribe`` JSON answer."""
    if answer is None:
        return []
    if not isinstance(answer, list):
        raise SpecError("/dapr/subscribe must answer a JSON array")
    specs = [_parse(item, "PROGRAMMATIC") for item in answer if isinstance(item, dict)]
    return [spec for spec in specs if spec is not None]


def from_declarations(documents: Iterable[tuple[str, dict[str, Any]]], app_id: str) -> list[SubscriptionSpec]:
    """``kind: Subscription`` resources (v1alpha1 or v2alpha1) in scope for ``app_id``."""
    specs = []
    for source, document in documents:
        scopes = document.get("scopes") or []
        if scopes and app_id not in scopes:
            continue
        name = (document.get("metadata") or {}).get("name", "?")
        try:
            spec = _parse(document.get("spec") or {}, "DECLARATIVE")
        except SpecError as exc:
            raise SpecError(f"{source}: subscription '{name}': {exc}") from None
        if spec is not None:
            specs.append(spec)
    return specs
