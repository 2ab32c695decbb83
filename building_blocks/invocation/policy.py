"""Running one invocation under its resiliency policy, in Dapr's order: retry( breaker( timeout( attempt ))).

* Each attempt has ``policy.timeout`` (``context deadline exceeded`` when it runs out).
* A circuit breaker counts every failed attempt (transport errors, timeouts, non-2xx/3xx answers); while
  open, attempts fail at once with ``circuit breaker is open`` (``too many requests`` when half-open and
  its probe quota is taken) and retrying stops.
* Retries follow ``policy.retry`` (its ``matching.httpStatusCodes`` decide which answers are retried), but
  only while ``can_retry()`` says the request can be sent again (its body was buffered or never read).
* Without a policy for the app, a remote target gets Dapr's built-in retries: 3 more tries, 1 s apart,
  only when the target sidecar could not be reached.

An attempt either returns a result (success), or raises ``AttemptFailed``; a failure carrying a ``result``
(the app's complete error answer) is returned as-is once retrying is over, as Dapr passes it through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar, cast

from building_blocks.resiliency import CircuitBreaker, TargetPolicy

__all__ = ("BUILT_IN_RETRIES", "AttemptFailed", "run")

log = logging.getLogger("layotto.invocation")
T = TypeVar("T")
#: Dapr's ``DaprBuiltInServiceRetries``: constant 1 s, 3 retries.
BUILT_IN_RETRIES = (1.0, 1.0, 1.0)


class AttemptFailed(Exception):
    """One attempt failed.

    ``status``: the app's status when it answered with an error; ``result``: that answer, to return when no
    retry follows; ``permanent``: never retry; ``unavailable``: the target sidecar could not be reached.
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        result: Any = None,
        permanent: bool = False,
        unavailable: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.result = result
        self.permanent = permanent
        self.unavailable = unavailable


def _retry_delays(policy: TargetPolicy, built_in: bool) -> Iterator[float]:
    if policy.retry is not None:
        return policy.retry.delays()
    return iter(BUILT_IN_RETRIES if built_in else ())


def _should_retry(failure: AttemptFailed, policy: TargetPolicy, built_in: bool) -> bool:
    if failure.permanent:
        return False
    if policy.retry is not None:
        return failure.status is None or policy.retry.retries_status(failure.status)
    return built_in and failure.unavailable


async def _timed(attempt: Callable[[], Awaitable[T]], timeout: float) -> T:
    """An attempt under the policy's timeout (without one, the attempt is awaited directly: no extra frame)."""
    try:
        async with asyncio.timeout(timeout):
            return await attempt()
    except TimeoutError:
        raise AttemptFailed("context deadline exceeded") from None


async def run(
    target: str,
    policy: TargetPolicy,
    breaker: CircuitBreaker | None,
    attempt: Callable[[], Awaitable[T]],
    can_retry: Callable[[], bool],
    built_in: bool = False,
) -> T:
    """The result of the first successful attempt, or the last failed answer; ``AttemptFailed`` otherwise."""
    built_in = built_in and policy.retry is None
    delays: Iterator[float] | None = None
    timeout = policy.timeout
    tries = 0
    while True:
        tries += 1
        if breaker is not None:
            state = breaker.state
            if not breaker.allow():
                raise AttemptFailed("circuit breaker is open" if state == "open" else "too many requests")
        try:
            result = await (attempt() if timeout is None else _timed(attempt, timeout))
        except BaseException as exc:
            if breaker is not None:
                breaker.record(False)  # also frees a half-open slot when the caller went away
            if not isinstance(exc, AttemptFailed):
                raise
            failure = exc
            if delays is None:
                delays = _retry_delays(policy, built_in)
            delay = next(delays, None) if _should_retry(failure, policy, built_in) and can_retry() else None
            if delay is None:
                if failure.result is not None:
                    return cast(T, failure.result)
                if built_in and failure.unavailable:
                    reason = f"failed to invoke target {target} after {tries - 1} retries. Error: {failure.reason}"
                    raise AttemptFailed(reason, unavailable=True) from None
                raise
            log.debug("invoking %s failed (%s); retrying in %.2fs", target, failure.reason, delay)
            await asyncio.sleep(delay)
            continue
        if breaker is not None:
            breaker.record(True)
        return result
