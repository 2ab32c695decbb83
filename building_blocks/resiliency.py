"""Dapr ``kind: Resiliency`` resources: named timeout / retry / circuit-breaker policies and their targets.

Modelled: ``targets.components.<name>.inbound|outbound``, ``targets.apps.<app-id>`` and the built-in
default policy names (``Default<Type>ComponentOutboundRetryPolicy``, ``DefaultComponentOutbound...``,
``DefaultComponent...``, ``Default...``). Policies of every Resiliency resource in scope share one namespace
(a later resource redefines a name), as in Dapr; targets are resolved once all are read. Defaults are Dapr's
(constant retries every 5 s, unlimited; exponential from 500 ms x1.5 up to 60 s; a circuit breaker trips
when ``consecutiveFailures > 5``, stays open 60 s and lets 1 probe through when half-open).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from building_blocks.component import parse_duration
from building_blocks.errors import SpecError

__all__ = (
    "NO_POLICY",
    "CircuitBreaker",
    "CircuitBreakerPolicy",
    "Counts",
    "Resiliency",
    "RetryPolicy",
    "TargetPolicy",
    "Trip",
)

log = logging.getLogger("layotto.resiliency")

_COUNTERS = ("requests", "totalSuccesses", "totalFailures", "consecutiveSuccesses", "consecutiveFailures")
_COMPARISON = re.compile(r"^\s*(" + "|".join(_COUNTERS) + r")\s*(>=|<=|==|!=|>|<)\s*(\d+)\s*$")
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    ">": int.__gt__,
    ">=": int.__ge__,
    "<": int.__lt__,
    "<=": int.__le__,
    "==": int.__eq__,
    "!=": int.__ne__,
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    policy: str = "constant"
    duration: float = 5.0
    initial_interval: float = 0.5
    multiplier: float = 1.5
    randomization: float = 0.5
    max_interval: float = 60.0
    max_retries: int = -1  # -1 = unlimited, 0 = none
    status_codes: frozenset[int] = frozenset()  # empty = every failure is retried

    def delays(self) -> Iterator[float]:
        """The wait before each retry, in order; ends when the retries are used up."""
        attempt = 0
        interval = self.initial_interval
        while self.max_retries < 0 or attempt < self.max_retries:
            attempt += 1
            if self.policy == "exponential":
                jitter = interval * self.randomization
                yield min(self.max_interval, random.uniform(interval - jitter, interval + jitter))
                interval = min(self.max_interval, interval * self.multiplier)
            else:
                yield self.duration

    def retries_status(self, status: int) -> bool:
        return not self.status_codes or status in self.status_codes


@dataclass(slots=True)
class Counts:
    """A breaker's counts in its current generation (gobreaker's ``Counts``; the trip expression's variables)."""

    requests: int = 0
    total_successes: int = 0
    total_failures: int = 0
    consecutive_successes: int = 0
    consecutive_failures: int = 0

    def value(self, name: str) -> int:
        return {
            "requests": self.requests,
            "totalSuccesses": self.total_successes,
            "totalFailures": self.total_failures,
            "consecutiveSuccesses": self.consecutive_successes,
            "consecutiveFailures": self.consecutive_failures,
        }[name]


@dataclass(frozen=True, slots=True)
class Trip:
    """A ``trip`` expression: comparisons of the counters to integers joined by ``&&`` and ``||`` (the part of
    CEL Dapr's documentation uses); ``any_of`` holds alternatives, each a list of comparisons that must all hold."""

    any_of: tuple[tuple[tuple[str, str, int], ...], ...]

    @classmethod
    def parse(cls, text: str, where: str) -> Trip:
        alternatives = []
        for alternative in text.split("||"):
            terms = []
            for term in alternative.split("&&"):
                match = _COMPARISON.match(term)
                if match is None:
                    raise SpecError(
                        f"{where}: unsupported trip expression '{text}' (comparisons of {', '.join(_COUNTERS)} "
                        "to integers, joined by && and ||)"
                    )
                terms.append((match.group(1), match.group(2), int(match.group(3))))
            alternatives.append(tuple(terms))
        return cls(tuple(alternatives))

    def __call__(self, counts: Counts) -> bool:
        return any(all(_COMPARE[op](counts.value(name), n) for name, op, n in terms) for terms in self.any_of)


@dataclass(frozen=True, slots=True)
class CircuitBreakerPolicy:
    max_requests: int = 1
    interval: float = 0.0
    timeout: float = 60.0
    consecutive_failures: int = 5  # without ``trip``: trips when consecutive failures exceed this
    trip: Trip | None = None

    def trips(self, counts: Counts) -> bool:
        if self.trip is not None:
            return self.trip(counts)
        return counts.consecutive_failures > self.consecutive_failures


class CircuitBreaker:
    """gobreaker's state machine, as Dapr runs it: closed -> (``trip`` holds after a failure) -> open ->
    (``timeout``) -> half-open (``max_requests`` probes) -> closed after that many successes | open on a failure.
    In the closed state the counts are cleared every ``interval`` (0: never). State changes are logged."""

    def __init__(self, policy: CircuitBreakerPolicy, name: str = "") -> None:
        self.policy = policy
        self.name = name
        #: Told the new state on every change (the runtime's resiliency metrics).
        self.on_change: Callable[[str], None] | None = None
        self.counts = Counts()
        self._state = "closed"
        self._generation = 0
        self._expiry = self._next_expiry(time.monotonic())

    def _next_expiry(self, now: float) -> float:
        if self._state == "closed":
            return now + self.policy.interval if self.policy.interval > 0 else 0.0
        return now + self.policy.timeout if self._state == "open" else 0.0

    def _set(self, state: str, now: float) -> None:
        if state == self._state:
            return
        previous, self._state = self._state, state
        self._new_generation(now)
        log.info('Circuit breaker "%s" changed state from %s to %s', self.name, previous, state)
        if self.on_change is not None:
            self.on_change(state)

    def _new_generation(self, now: float) -> None:
        self._generation += 1
        self.counts = Counts()
        self._expiry = self._next_expiry(now)

    def _current(self, now: float) -> str:
        if self._state == "closed":
            if self._expiry and self._expiry <= now:
                self._new_generation(now)
        elif self._state == "open" and self._expiry <= now:
            self._set("half-open", now)
        return self._state

    @property
    def state(self) -> str:
        return self._current(time.monotonic())

    def begin(self) -> int | None:
        """Admit a request: its generation, or ``None`` when the breaker refuses it (see ``refusal``)."""
        state = self._current(time.monotonic())
        if state == "open" or (state == "half-open" and self.counts.requests >= max(1, self.policy.max_requests)):
            return None
        self.counts.requests += 1
        return self._generation

    def refusal(self) -> str:
        """gobreaker's text for a refused request."""
        return "circuit breaker is open" if self._state == "open" else "too many requests"

    def end(self, generation: int, success: bool) -> None:
        """The outcome of a request ``begin`` admitted; one from an earlier generation no longer counts."""
        now = time.monotonic()
        state = self._current(now)
        if generation != self._generation:
            return
        counts = self.counts
        if success:
            counts.total_successes += 1
            counts.consecutive_successes += 1
            counts.consecutive_failures = 0
            if state == "half-open" and counts.consecutive_successes >= max(1, self.policy.max_requests):
                self._set("closed", now)
            return
        counts.total_failures += 1
        counts.consecutive_failures += 1
        counts.consecutive_successes = 0
        if state == "half-open" or self.policy.trips(counts):
            self._set("open", now)

    def allow(self) -> bool:
        return self.begin() is not None

    def record(self, success: bool) -> None:
        self.end(self._generation, success)


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    timeout: float | None = None
    retry: RetryPolicy | None = None
    circuit_breaker: CircuitBreakerPolicy | None = None
    #: The circuit breaker policy's name (Dapr names a breaker ``<policy>-<target>``).
    circuit_breaker_name: str = ""

    def __bool__(self) -> bool:
        return self.timeout is not None or self.retry is not None or self.circuit_breaker is not None


NO_POLICY = TargetPolicy()

#: The levels of the default policy names for a component of ``<Type>`` in direction ``<Dir>``, most
#: specific first: ``Default<Type>Component<Dir><Kind>Policy``, ``DefaultComponent<Dir><Kind>Policy``,
#: ``DefaultComponent<Kind>Policy``, ``Default<Kind>Policy``.
_KINDS = {"timeout": "Timeout", "retry": "Retry", "circuitBreaker": "CircuitBreaker"}


def _default_names(component_type: str, direction: str, kind: str) -> tuple[str, ...]:
    word = _KINDS[kind]
    return (
        f"Default{component_type}Component{direction}{word}Policy",
        f"DefaultComponent{direction}{word}Policy",
        f"DefaultComponent{word}Policy",
        f"Default{word}Policy",
    )


def _codes(text: str, where: str) -> frozenset[int]:
    codes: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            codes.update(range(int(low), int(high or low) + 1))
        except ValueError:
            raise SpecError(f"{where}: invalid status code range '{part}'") from None
    return frozenset(codes)


def _seconds(value: Any, where: str) -> float:
    try:
        return parse_duration(str(value))
    except ValueError:
        raise SpecError(f"{where}: '{value}' is not a duration") from None


def _timeout(value: Any, where: str) -> float:
    """A timeout: a Go duration, or a bare integer of milliseconds (Dapr's reading)."""
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text) / 1000
    return _seconds(text, where)


def _int(raw: dict[str, Any], name: str, default: int, where: str) -> int:
    value = raw.get(name, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SpecError(f"{where}: {name} must be an integer, got '{value}'") from None


def _retry(raw: dict[str, Any], where: str) -> RetryPolicy:
    policy = str(raw.get("policy", "constant")).lower()
    if policy not in ("constant", "exponential"):
        raise SpecError(f"{where}: retry policy must be constant or exponential, got '{policy}'")
    defaults = RetryPolicy()
    matching = raw.get("matching") or {}
    try:
        multiplier = float(raw.get("multiplier", defaults.multiplier))
        randomization = float(raw.get("randomizationFactor", defaults.randomization))
    except (TypeError, ValueError):
        raise SpecError(f"{where}: multiplier and randomizationFactor must be numbers") from None
    return RetryPolicy(
        policy=policy,
        duration=_seconds(raw.get("duration", "5s"), where),
        initial_interval=_seconds(raw.get("initialInterval", "500ms"), where),
        multiplier=multiplier,
        randomization=randomization,
        max_interval=_seconds(raw.get("maxInterval", "60s"), where),
        max_retries=_int(raw, "maxRetries", -1, where),
        status_codes=_codes(matching.get("httpStatusCodes", "") if isinstance(matching, dict) else "", where),
    )


def _breaker(raw: dict[str, Any], where: str) -> CircuitBreakerPolicy:
    trip = raw.get("trip")
    return CircuitBreakerPolicy(
        max_requests=_int(raw, "maxRequests", 1, where),
        interval=_seconds(raw.get("interval", "0s"), where),
        timeout=_seconds(raw.get("timeout", "60s"), where),
        trip=Trip.parse(str(trip), where) if trip is not None else None,
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(slots=True)
class Resiliency:
    """All Resiliency resources in scope, merged."""

    components_inbound: dict[str, TargetPolicy] = field(default_factory=dict)
    components_outbound: dict[str, TargetPolicy] = field(default_factory=dict)
    apps: dict[str, TargetPolicy] = field(default_factory=dict)
    timeouts: dict[str, float] = field(default_factory=dict)
    retries: dict[str, RetryPolicy] = field(default_factory=dict)
    circuit_breakers: dict[str, CircuitBreakerPolicy] = field(default_factory=dict)
    #: The names of the Resiliency resources in scope (``metadata.name``).
    names: list[str] = field(default_factory=list)
    #: Told of every activation: (policy kind ``timeout``/``retry``/``circuitbreaker``, Dapr's target label
    #: such as ``Statestore_mystore``, the breaker's new state or ``""``); the runtime's resiliency metrics.
    listeners: list[Callable[[str, str, str], None]] = field(default_factory=list)

    def activated(self, policy: str, target: str, status: str = "") -> None:
        for listener in self.listeners:
            listener(policy, target, status)

    @classmethod
    def load(cls, documents: Iterable[tuple[str, dict[str, Any]]], app_id: str) -> Resiliency:
        merged = cls()
        scoped = [
            (source, document)
            for source, document in documents
            if not document.get("scopes") or app_id in (document.get("scopes") or [])
        ]
        for source, document in scoped:
            merged._add_policies(source, document)
            name = (document.get("metadata") or {}).get("name") if isinstance(document.get("metadata"), dict) else None
            if isinstance(name, str):
                merged.names.append(name)
        for source, document in scoped:
            merged._add_targets(source, document)
        return merged

    @staticmethod
    def _where(source: str, document: dict[str, Any]) -> str:
        return f"{source}: resiliency '{_mapping(document.get('metadata')).get('name', '?')}'"

    def _add_policies(self, source: str, document: dict[str, Any]) -> None:
        where = self._where(source, document)
        policies = _mapping(_mapping(document.get("spec")).get("policies"))
        for name, value in _mapping(policies.get("timeouts")).items():
            self.timeouts[str(name)] = _timeout(value, f"{where}: timeout '{name}'")
        for name, value in _mapping(policies.get("retries")).items():
            self.retries[str(name)] = _retry(_mapping(value), f"{where}: retry '{name}'")
        for name, value in _mapping(policies.get("circuitBreakers")).items():
            self.circuit_breakers[str(name)] = _breaker(_mapping(value), f"{where}: circuit breaker '{name}'")

    def _target(self, raw: dict[str, Any], where: str) -> TargetPolicy:
        tables: dict[str, dict[str, Any]] = {
            "timeout": self.timeouts,
            "retry": self.retries,
            "circuitBreaker": self.circuit_breakers,
        }
        for kind, table in tables.items():
            reference = raw.get(kind)
            if reference is not None and reference not in table:
                raise SpecError(f"{where} refers to unknown {kind} policy '{reference}'")
        breaker = raw.get("circuitBreaker")
        return TargetPolicy(
            self.timeouts.get(raw["timeout"]) if raw.get("timeout") is not None else None,
            self.retries.get(raw["retry"]) if raw.get("retry") is not None else None,
            self.circuit_breakers.get(breaker) if breaker is not None else None,
            str(breaker or ""),
        )

    def _add_targets(self, source: str, document: dict[str, Any]) -> None:
        where = self._where(source, document)
        targets = _mapping(_mapping(document.get("spec")).get("targets"))
        for app, raw in _mapping(targets.get("apps")).items():
            self.apps[app] = self._target(_mapping(raw), f"{where}: apps.{app}")
        for component, raw in _mapping(targets.get("components")).items():
            raw = _mapping(raw)
            if raw.get("inbound"):
                inbound = self._target(_mapping(raw["inbound"]), f"{where}: components.{component}.inbound")
                self.components_inbound[component] = inbound
            if raw.get("outbound"):
                outbound = self._target(_mapping(raw["outbound"]), f"{where}: components.{component}.outbound")
                self.components_outbound[component] = outbound

    def _defaults(self, component_type: str, direction: str) -> TargetPolicy:
        """Each kind from the most specific default name that exists (``NO_POLICY`` when none does)."""
        return self._first_defaults(lambda kind: _default_names(component_type, direction, kind))

    def _first_defaults(self, names: Callable[[str], tuple[str, ...]]) -> TargetPolicy:
        def first(table: dict[str, Any], kind: str) -> str | None:
            return next((name for name in names(kind) if name in table), None)

        timeout = first(self.timeouts, "timeout")
        retry = first(self.retries, "retry")
        breaker = first(self.circuit_breakers, "circuitBreaker")
        return TargetPolicy(
            self.timeouts[timeout] if timeout else None,
            self.retries[retry] if retry else None,
            self.circuit_breakers[breaker] if breaker else None,
            breaker or "",
        )

    def component_outbound(self, component: str, component_type: str) -> TargetPolicy:
        """Dapr's ``ComponentOutboundPolicy``: the component's own target, whole (kinds it leaves out are not
        filled from the defaults), else the default policies of ``component_type`` ("Statestore", "Pubsub"...)."""
        own = self.components_outbound.get(component)
        return own if own is not None else self._defaults(component_type, "Outbound")

    def inbound(self, component: str, component_type: str = "Pubsub") -> TargetPolicy:
        """Dapr's ``ComponentInboundPolicy`` (deliveries from a pub/sub): the component's own inbound target,
        else the ``Default<Type>ComponentInbound...`` names and the more general defaults."""
        own = self.components_inbound.get(component)
        return own if own is not None else self._defaults(component_type, "Inbound")

    def app(self, app_id: str) -> TargetPolicy:
        """Dapr's ``EndpointPolicy``: the app's own target, whole, else the default policies of apps
        (``DefaultApp<Kind>Policy``, then ``Default<Kind>Policy``)."""
        own = self.apps.get(app_id)
        if own is not None:
            return own
        return self._first_defaults(lambda kind: (f"DefaultApp{_KINDS[kind]}Policy", f"Default{_KINDS[kind]}Policy"))

    def defines_app(self, app_id: str) -> bool:
        """Whether the app has a target of its own (Dapr's ``PolicyDefined``): without one, calls to another
        sidecar also get the built-in retries when it cannot be reached."""
        return app_id in self.apps
