"""Outbound resiliency for component calls: a ``Layer`` that runs each call of a component with a policy in
Dapr's nesting, retry( circuit breaker( timeout( call ))).

* The policy of each component is resolved once at start-up (``Resiliency.component_outbound``: the
  component's own ``targets.components.<name>.outbound``, else the most specific ``Default...`` names for its
  type). The layer is installed only on blocks where some component has a policy, and a component without
  one costs a dict miss; with no policy anywhere there is no layer at all.
* A timeout ends the attempt with ``context deadline exceeded``; an open breaker refuses at once with
  ``circuit breaker is open`` (``too many requests`` when half-open and its probes are taken) and stops the
  retries. Both are ``ComponentError``s, so the client gets the API's own code and a 500, as from Dapr.
* A failure that is the store's answer to this request (an etag conflict, a refused option, a missing
  secret, the caller's own mistake) is returned at once: retrying can't change it, and the store that gave
  it is healthy, so the breaker counts it as a success. Everything else (connection refused, timeouts...)
  is a failure: counted by the breaker, retried per the policy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from building_blocks.block import Block, ComponentCall, LayerOrder
from building_blocks.errors import (
    CLIENT_MISTAKES,
    BulkError,
    ComponentError,
    ETagInvalid,
    ETagMismatch,
    FeatureNotSupported,
    InvalidOption,
    KeyRefused,
    NotFoundInStore,
    OperationFailed,
)
from building_blocks.resiliency import CircuitBreaker, Resiliency, TargetPolicy

__all__ = ("COMPONENT_TYPES", "BreakerRefused", "ComponentResiliency", "DeadlineExceeded", "install")

log = logging.getLogger("layotto.resiliency")
T = TypeVar("T")

#: Dapr's component type names in default policy names, by block (Dapr has no sequencer: ours, same shape).
COMPONENT_TYPES = {
    "state": "Statestore",
    "pubsub": "Pubsub",
    "secretstores": "Secretstore",
    "configuration": "Configuration",
    "lock": "Lock",
    "sequencer": "Sequencer",
}

#: The store's own answers to a request: final, and no sign of an unhealthy store.
_ANSWERS = (*CLIENT_MISTAKES, ETagMismatch, ETagInvalid, InvalidOption, NotFoundInStore, KeyRefused)
_ANSWERS += (FeatureNotSupported, BulkError)  # a partial bulk write is not replayed: applied items would conflict


class BreakerRefused(ComponentError):
    """The component's circuit breaker refused the call (gobreaker's text: open, or half-open and busy)."""


class DeadlineExceeded(ComponentError):
    """An attempt outlived the policy's timeout (Go's ``context deadline exceeded``)."""

    def __init__(self) -> None:
        super().__init__("context deadline exceeded")


def _answered(exc: BaseException) -> bool:
    if isinstance(exc, OperationFailed):
        return _answered(exc.cause)
    return isinstance(exc, _ANSWERS)


def _go_duration(seconds: float) -> str:
    """How Go prints a duration in the retry log line (``5s``, ``500ms``)."""
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


async def _sleep(delay: float) -> None:
    """At least ``delay`` (the loop may wake a timer a little early): a breaker that opened before the wait,
    with a timeout equal to the retry interval (Dapr's quickstart), is then half-open when the retry comes."""
    end = time.monotonic() + delay
    await asyncio.sleep(delay)
    if (left := end - time.monotonic()) > 0:
        await asyncio.sleep(left + 0.001)


class _Runner:
    """One component's policy and its breaker (one per component, named ``<policy>-<component>``)."""

    __slots__ = ("breaker", "name", "policy", "resiliency", "target")

    def __init__(self, component: str, policy: TargetPolicy, target: str, resiliency: Resiliency) -> None:
        self.name = f"component[{component}] output"
        self.policy = policy
        #: Dapr's ``target`` label for activations (``Statestore_mystore``), and who is told of them.
        self.target, self.resiliency = target, resiliency
        self.breaker = (
            CircuitBreaker(policy.circuit_breaker, f"{policy.circuit_breaker_name}-{component}")
            if policy.circuit_breaker is not None
            else None
        )
        if self.breaker is not None:
            self.breaker.on_change = lambda state: resiliency.activated("circuitbreaker", target, state)

    async def run(self, proceed: Callable[[], Awaitable[T]]) -> T:
        retry = self.policy.retry
        assert retry is not None, "without retries, the layer calls attempt() directly"
        delays: Iterator[float] | None = None  # made on the first failure: a success costs no generator
        attempts = 0
        while True:
            attempts += 1
            try:
                result = await self.attempt(proceed)
            except Exception as exc:
                if isinstance(exc, BreakerRefused) or _answered(exc):
                    raise
                if delays is None:
                    delays = retry.delays()
                delay = next(delays, None)
                if delay is None:
                    raise
                log.warning("Error processing operation %s. Retrying in %s…", self.name, _go_duration(delay))
                self.resiliency.activated("retry", self.target)
                log.debug("Error for operation %s was: %s", self.name, exc)
                await _sleep(delay)
                continue
            if attempts > 1:
                log.info("Recovered processing operation %s after %d attempts", self.name, attempts)
            return result

    async def attempt(self, proceed: Callable[[], Awaitable[T]]) -> T:
        """One attempt: through the breaker, within the timeout (one frame: this runs on every call)."""
        breaker = self.breaker
        generation = 0
        if breaker is not None:
            admitted = breaker.begin()
            if admitted is None:
                raise BreakerRefused(breaker.refusal())
            generation = admitted
        timeout = self.policy.timeout
        try:
            if timeout is None:
                result = await proceed()
            else:
                deadline = asyncio.timeout(timeout)
                try:
                    async with deadline:
                        result = await proceed()
                except TimeoutError:
                    if deadline.expired():
                        self.resiliency.activated("timeout", self.target)
                        raise DeadlineExceeded() from None
                    raise
        except BaseException as exc:  # a cancelled call is a failure too (and frees its half-open slot)
            if breaker is not None:
                breaker.end(generation, _answered(exc))
            raise
        if breaker is not None:
            breaker.end(generation, True)
        return result


class ComponentResiliency:
    """The layer: each call of a component that has a policy runs under it; the others pass straight on."""

    order = LayerOrder.RESILIENCY

    def __init__(self, runners: Mapping[str, _Runner]) -> None:
        self.runners = dict(runners)

    def __call__(self, call: ComponentCall, proceed: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        runner = self.runners.get(call.store)
        if runner is None:
            return proceed()
        return runner.run(proceed) if runner.policy.retry is not None else runner.attempt(proceed)


def install(resiliency: Resiliency, blocks: Iterable[Block[Any, Any]]) -> None:
    """Add the layer to each block where some loaded component has an outbound policy."""
    for block in blocks:
        component_type = COMPONENT_TYPES.get(block.type_prefix)
        if component_type is None:
            continue
        runners = {
            name: _Runner(name, policy, f"{component_type}_{name}", resiliency)
            for name in block.entries
            if (policy := resiliency.component_outbound(name, component_type))
        }
        if runners:
            block.add_layer(ComponentResiliency(runners))
            for name, runner in runners.items():
                log.info("Resiliency policy for %s %s: %s", block.kind, name, _describe(runner.policy))


def _describe(policy: TargetPolicy) -> str:
    parts = []
    if policy.timeout is not None:
        parts.append(f"timeout {_go_duration(policy.timeout)}")
    if policy.retry is not None:
        retries = "unlimited" if policy.retry.max_retries < 0 else str(policy.retry.max_retries)
        parts.append(f"{policy.retry.policy} retries ({retries})")
    if policy.circuit_breaker is not None:
        parts.append(f'circuit breaker "{policy.circuit_breaker_name}"')
    return ", ".join(parts)
