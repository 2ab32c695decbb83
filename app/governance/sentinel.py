"""``middleware.http.sentinel``: Sentinel flow control per resource ``<METHOD>:<path>`` (e.g.
``POST:/v1.0/invoke/nodeapp/method/neworder``), as Dapr's middleware (sentinel-golang) and the flow control
Layotto users know from MOSN's Sentinel filter. A blocked request gets 429 ``Too Many Requests``.

Metadata (JSON arrays in sentinel-golang's rule format): ``flowRules`` (``resource``, ``threshold``,
``controlBehavior`` 0 reject / 1 throttling with ``maxQueueingTimeMs``, ``statIntervalInMs``;
``tokenCalculateStrategy`` 0 direct) and ``isolationRules`` (``resource``, ``metricType`` 0 concurrency,
``threshold``). ``appName`` and ``logDir`` are accepted. Rule kinds not implemented here (warm-up and
memory-adaptive flow, relation to another resource, circuit-breaker, hot-spot and system rules) stop
start-up with one line instead of being ignored.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from app.governance.pipeline import MiddlewareSpec, Next
from app.paths import unescape
from building_blocks.errors import SpecError

__all__ = ("Sentinel", "create")

_UNSUPPORTED = ("circuitBreakerRules", "hotSpotParamRules", "systemRules")
#: Most requests one QPS rule remembers (its window): a rule's threshold bounds it anyway.
_MAX_WINDOW = 1_000_000


@dataclass(slots=True)
class _Flow:
    """A QPS limit: ``reject`` counts passes in a sliding ``interval``; throttling spaces them evenly."""

    threshold: float
    throttle: bool
    max_queueing: float  # seconds
    interval: float  # seconds
    passed: collections.deque[float] = field(default_factory=collections.deque)
    last: float = -math.inf

    async def admit(self) -> bool:
        now = time.monotonic()
        if self.throttle:
            if self.threshold <= 0:
                return False
            gap = 1.0 / self.threshold
            start = max(now, self.last + gap)
            wait = start - now
            if wait > self.max_queueing:
                return False
            self.last = start
            if wait > 0:
                await asyncio.sleep(wait)
            return True
        window = self.passed
        while window and window[0] <= now - self.interval:
            window.popleft()
        if (len(window) + 1) / self.interval > self.threshold or len(window) >= _MAX_WINDOW:
            return False
        window.append(now)
        return True


@dataclass(slots=True)
class _Concurrency:
    threshold: int
    current: int = 0


@dataclass(slots=True)
class _Rules:
    flows: list[_Flow] = field(default_factory=list)
    concurrency: list[_Concurrency] = field(default_factory=list)


class Sentinel:
    def __init__(self, rules: dict[str, _Rules]) -> None:
        self.rules = rules

    async def __call__(self, request: Request, proceed: Next) -> Response:
        scope = request.scope
        rules = self.rules.get(f"{scope['method']}:{unescape(scope['path'])}")
        if rules is None:
            return await proceed()
        if any(limit.current >= limit.threshold for limit in rules.concurrency):
            return _blocked()
        for limit in rules.concurrency:  # taken before a throttled wait, so waiting requests count too
            limit.current += 1
        try:
            for flow in rules.flows:
                if not await flow.admit():
                    return _blocked()
            return await proceed()
        finally:
            for limit in rules.concurrency:
                limit.current -= 1


def _blocked() -> Response:
    return PlainTextResponse("Too Many Requests", 429)


def _array(spec: MiddlewareSpec, name: str) -> list[dict[str, Any]]:
    text = spec.metadata.get(name, "")
    if not text:
        return []
    try:
        rules = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SpecError(f"{spec.where}: {name} is not JSON: {exc}") from None
    if not isinstance(rules, list) or not all(isinstance(rule, dict) for rule in rules):
        raise SpecError(f"{spec.where}: {name} must be a JSON array of rule objects")
    return rules


def _number(rule: dict[str, Any], name: str, default: float, where: str) -> float:
    value = rule.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise SpecError(f"{where}: {name} must be a non-negative number, got {value!r}")
    return float(value)


def _resource(rule: dict[str, Any], where: str) -> str:
    resource = rule.get("resource")
    if not isinstance(resource, str) or not resource:
        raise SpecError(f"{where}: a rule needs a resource")
    return resource


def _flow(rule: dict[str, Any], where: str) -> _Flow:
    for name, supported in (("tokenCalculateStrategy", 0), ("relationStrategy", 0)):
        if rule.get(name, 0) != supported:
            raise SpecError(f"{where}: flow rule {name} {rule.get(name)!r} is not supported (only {supported})")
    behaviour = rule.get("controlBehavior", 0)
    if behaviour not in (0, 1):
        raise SpecError(f"{where}: flow rule controlBehavior must be 0 (reject) or 1 (throttling)")
    interval = _number(rule, "statIntervalInMs", 1000, where) / 1000 or 1.0
    return _Flow(
        threshold=_number(rule, "threshold", 0, where),
        throttle=behaviour == 1,
        max_queueing=_number(rule, "maxQueueingTimeMs", 0, where) / 1000,
        interval=interval,
    )


def parse(spec: MiddlewareSpec) -> dict[str, _Rules]:
    where = spec.where
    for name in _UNSUPPORTED:
        if _array(spec, name):
            raise SpecError(f"{where}: sentinel {name} are not supported")
    rules: dict[str, _Rules] = {}
    for rule in _array(spec, "flowRules"):
        rules.setdefault(_resource(rule, where), _Rules()).flows.append(_flow(rule, where))
    for rule in _array(spec, "isolationRules"):
        if rule.get("metricType", 0) != 0:
            raise SpecError(f"{where}: isolation rule metricType must be 0 (concurrency)")
        threshold = int(_number(rule, "threshold", 0, where))
        rules.setdefault(_resource(rule, where), _Rules()).concurrency.append(_Concurrency(threshold))
    return rules


async def create(spec: MiddlewareSpec) -> Sentinel:
    if not spec.metadata.get("appName"):
        raise SpecError(f"{spec.where}: metadata property 'appName' is required")
    return Sentinel(parse(spec))
