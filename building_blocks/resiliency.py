"""Dapr ``kind: Resiliency`` resources: named timeout / retry / circuit-breaker policies and their targets.

Only the parts the runtime uses are modelled: ``targets.components.<name>.inbound|outbound`` and
``targets.apps.<app-id>``. Defaults are Dapr's (constant retries every 5 s, unlimited; exponential from
500 ms x1.5 up to 60 s; circuit breakers trip after more than 5 consecutive failures and stay open 60 s).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from building_blocks.component import parse_duration
from building_blocks.errors import SpecError

__all__ = ("CircuitBreaker", "CircuitBreakerPolicy", "Resiliency", "RetryPolicy", "TargetPolicy")

_TRIP = re.compile(r"^\s*consecutiveFailures\s*(>=|>)\s*(\d+)\s*$")


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


@dataclass(frozen=True, slots=True)
class CircuitBreakerPolicy:
    max_requests: int = 1
    interval: float = 0.0
    timeout: float = 60.0
    consecutive_failures: int = 5  # trips when failures exceed this


class CircuitBreaker:
    """closed -> (too many consecutive failures) -> open -> (timeout) -> half-open -> closed | open."""

    def __init__(self, policy: CircuitBreakerPolicy) -> None:
        self.policy = policy
        self.failures = 0
        self.opened_at: float | None = None
        self.half_open_in_flight = 0

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self.opened_at >= self.policy.timeout else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and self.half_open_in_flight < self.policy.max_requests:
            self.half_open_in_flight += 1
            return True
        return False

    def record(self, success: bool) -> None:
        if success:
            self.failures = 0
            self.opened_at = None
            self.half_open_in_flight = 0
            return
        self.failures += 1
        if self.opened_at is not None or self.failures > self.policy.consecutive_failures:
            self.opened_at = time.monotonic()
            self.half_open_in_flight = 0


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    timeout: float | None = None
    retry: RetryPolicy | None = None
    circuit_breaker: CircuitBreakerPolicy | None = None


NO_POLICY = TargetPolicy()


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


def _retry(raw: dict[str, Any], where: str) -> RetryPolicy:
    policy = str(raw.get("policy", "constant")).lower()
    if policy not in ("constant", "exponential"):
        raise SpecError(f"{where}: retry policy must be constant or exponential, got '{policy}'")
    defaults = RetryPolicy()
    matching = raw.get("matching") or {}
    return RetryPolicy(
        policy=policy,
        duration=_seconds(raw.get("duration", "5s"), where),
        initial_interval=_seconds(raw.get("initialInterval", "500ms"), where),
        multiplier=float(raw.get("multiplier", defaults.multiplier)),
        randomization=float(raw.get("randomizationFactor", defaults.randomization)),
        max_interval=_seconds(raw.get("maxInterval", "60s"), where),
        max_retries=int(raw.get("maxRetries", -1)),
        status_codes=_codes(matching.get("httpStatusCodes", ""), where),
    )


def _breaker(raw: dict[str, Any], where: str) -> CircuitBreakerPolicy:
    trip = str(raw.get("trip", "consecutiveFailures > 5"))
    match = _TRIP.match(trip)
    if match is None:
        raise SpecError(f"{where}: only 'consecutiveFailures > N' trips are supported, got '{trip}'")
    threshold = int(match.group(2)) - (1 if match.group(1) == ">=" else 0)
    return CircuitBreakerPolicy(
        max_requests=int(raw.get("maxRequests", 1)),
        interval=_seconds(raw.get("interval", "0s"), where),
        timeout=_seconds(raw.get("timeout", "60s"), where),
        consecutive_failures=threshold,
    )


@dataclass(slots=True)
class Resiliency:
    """All Resiliency resources in scope, merged."""

    components_inbound: dict[str, TargetPolicy] = field(default_factory=dict)
    components_outbound: dict[str, TargetPolicy] = field(default_factory=dict)
    apps: dict[str, TargetPolicy] = field(default_factory=dict)

    @classmethod
    def load(cls, documents: Iterable[tuple[str, dict[str, Any]]], app_id: str) -> Resiliency:
        merged = cls()
        for source, document in documents:
            scopes = document.get("scopes") or []
            if not scopes or app_id in scopes:
                merged._add(source, document)
        return merged

    def _add(self, source: str, document: dict[str, Any]) -> None:
        name = (document.get("metadata") or {}).get("name", "?")
        where = f"{source}: resiliency '{name}'"
        spec = document.get("spec") or {}
        policies = spec.get("policies") or {}
        tables: dict[str, dict[str, Any]] = {
            "timeout": {k: _seconds(v, where) for k, v in (policies.get("timeouts") or {}).items()},
            "retry": {k: _retry(v or {}, where) for k, v in (policies.get("retries") or {}).items()},
            "circuitBreaker": {k: _breaker(v or {}, where) for k, v in (policies.get("circuitBreakers") or {}).items()},
        }

        def target(raw: dict[str, Any], what: str) -> TargetPolicy:
            chosen: dict[str, Any] = {}
            for kind, table in tables.items():
                reference = raw.get(kind)
                if reference is not None and reference not in table:
                    raise SpecError(f"{where}: {what} refers to unknown {kind} policy '{reference}'")
                chosen[kind] = table.get(reference) if reference is not None else None
            return TargetPolicy(chosen["timeout"], chosen["retry"], chosen["circuitBreaker"])

        targets = spec.get("targets") or {}
        for app, raw in (targets.get("apps") or {}).items():
            self.apps[app] = target(raw or {}, f"apps.{app}")
        for component, raw in (targets.get("components") or {}).items():
            raw = raw or {}
            if raw.get("inbound"):
                self.components_inbound[component] = target(raw["inbound"], f"components.{component}.inbound")
            if raw.get("outbound"):
                self.components_outbound[component] = target(raw["outbound"], f"components.{component}.outbound")

    def inbound(self, component: str) -> TargetPolicy:
        return self.components_inbound.get(component, NO_POLICY)

    def app(self, app_id: str) -> TargetPolicy:
        return self.apps.get(app_id, NO_POLICY)
