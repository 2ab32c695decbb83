"""The invocation runner: retries, timeouts, circuit breakers and Dapr's built-in retries, without HTTP."""

from __future__ import annotations

import asyncio

import pytest

from building_blocks.errors import InvocationFailed
from building_blocks.invocation.policy import AttemptFailed, run
from building_blocks.invocation.targets import TargetKind, normalize_method, parse_target
from building_blocks.resiliency import CircuitBreaker, CircuitBreakerPolicy, RetryPolicy, TargetPolicy

FAST = RetryPolicy(duration=0.0, max_retries=2)


class Script:
    """Attempts that fail as scripted (``None`` = success), counting the calls."""

    def __init__(self, *outcomes: AttemptFailed | None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if outcome is not None:
            raise outcome
        return "ok"


async def test_retries_until_success_and_returns_the_last_answer() -> None:
    script = Script(AttemptFailed("x", status=503, result="503 answer"), None)
    assert await run("app", TargetPolicy(retry=FAST), None, script, lambda: True) == "ok"
    failing = Script(AttemptFailed("x", status=503, result="503 answer"))
    assert await run("app", TargetPolicy(retry=FAST), None, failing, lambda: True) == "503 answer"
    assert failing.calls == 3


async def test_no_retry_when_the_status_does_not_match_or_the_body_is_gone() -> None:
    matching = RetryPolicy(duration=0.0, max_retries=5, status_codes=frozenset({503}))
    other = Script(AttemptFailed("x", status=500, result="500"))
    assert await run("app", TargetPolicy(retry=matching), None, other, lambda: True) == "500"
    assert other.calls == 1
    consumed = Script(AttemptFailed("reset"))
    with pytest.raises(AttemptFailed, match="reset"):
        await run("app", TargetPolicy(retry=matching), None, consumed, lambda: False)
    assert consumed.calls == 1


async def test_timeout_per_attempt() -> None:
    async def slow() -> str:
        await asyncio.sleep(1)
        return "late"

    with pytest.raises(AttemptFailed, match=r"^context deadline exceeded$"):
        await run("app", TargetPolicy(timeout=0.05), None, slow, lambda: True)


async def test_breaker_opens_stops_retries_and_half_opens() -> None:
    breaker = CircuitBreaker(CircuitBreakerPolicy(timeout=0.1, consecutive_failures=1))
    failing = Script(AttemptFailed("boom"))
    policy = TargetPolicy(retry=RetryPolicy(duration=0.0, max_retries=10))
    with pytest.raises(AttemptFailed, match=r"^circuit breaker is open$"):
        await run("app", policy, breaker, failing, lambda: True)
    assert failing.calls == 2  # the breaker tripped after more than one failure
    await asyncio.sleep(0.12)
    assert breaker.state == "half-open" and breaker.allow()  # a probe is in flight
    with pytest.raises(AttemptFailed, match=r"^too many requests$"):
        await run("app", TargetPolicy(), breaker, Script(None), lambda: True)
    breaker.record(True)
    assert await run("app", TargetPolicy(), breaker, Script(None), lambda: True) == "ok"


async def test_built_in_retries_only_for_unreachable_sidecars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("building_blocks.invocation.policy.BUILT_IN_RETRIES", (0.0, 0.0, 0.0))
    unreachable = Script(AttemptFailed("connection refused", unavailable=True))
    with pytest.raises(AttemptFailed) as failure:
        await run("b", TargetPolicy(), None, unreachable, lambda: True, built_in=True)
    assert failure.value.reason == "failed to invoke target b after 3 retries. Error: connection refused"
    assert unreachable.calls == 4
    app_error = Script(AttemptFailed("x", status=500, result="500"))
    assert await run("b", TargetPolicy(), None, app_error, lambda: True, built_in=True) == "500"
    assert app_error.calls == 1


def test_targets_and_methods() -> None:
    assert parse_target("me", "me", "", {}).kind is TargetKind.LOCAL
    assert parse_target("me.default", "me", "", {}).kind is TargetKind.LOCAL
    assert parse_target("me.other", "me", "", {}).kind is TargetKind.REMOTE
    remote = parse_target("orders.prod", "me", "", {})
    assert (remote.kind, remote.app_id, remote.namespace) == (TargetKind.REMOTE, "orders", "prod")
    assert parse_target("https://x.org/api", "me", "", {}).base_url == "https://x.org/api"
    with pytest.raises(InvocationFailed, match=r"invalid app id a\.b\.c$"):
        parse_target("a.b.c", "me", "", {})
    assert normalize_method("a", "x/../../y/./z/") == "y/z"
    assert normalize_method("a", "../..") == ""
    assert normalize_method("a", 'te"st*\\') == 'te"st*\\'
    with pytest.raises(InvocationFailed, match="control character"):
        normalize_method("a", "x\ry")
