"""Outbound resiliency around component calls, against a private redis-server that the tests stop and start:
Dapr's resolution (own target, else the most specific default), retry( breaker( timeout )), and the errors a
client gets (the API's own code, 500, ``circuit breaker is open`` / ``context deadline exceeded``)."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path

import httpx
import pytest

from building_blocks.resiliency import Resiliency
from tests.governance.redis_server import private_redis
from tests.sidecar import component_yaml, running_sidecar

WAIT = 60.0  # seconds: bounds a failure only; a busy machine may be slow


def resiliency_yaml(policies: str, targets: str = "components: {}", name: str = "myresiliency") -> str:
    """A Resiliency resource; ``policies`` and ``targets`` are YAML blocks (any indentation)."""
    head = f"apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: {name}\nspec:\n"
    policies_block = textwrap.indent(textwrap.dedent(policies), "    ")
    targets_block = textwrap.indent(textwrap.dedent(targets), "    ")
    return f"{head}  policies:\n{policies_block}  targets:\n{targets_block}\n"


def test_own_target_replaces_defaults_and_the_most_specific_default_wins() -> None:
    document = resiliency_yaml(
        """\
        timeouts:
          DefaultTimeoutPolicy: 7s
          DefaultComponentOutboundTimeoutPolicy: "300"
          short: 1s
        retries:
          DefaultStatestoreComponentOutboundRetryPolicy: {policy: constant, duration: 1s, maxRetries: 2}
          DefaultComponentRetryPolicy: {policy: constant, duration: 2s}
        circuitBreakers:
          DefaultLockComponentOutboundCircuitBreakerPolicy: {trip: consecutiveFailures >= 3, timeout: 2s}
        """,
        """\
        components:
          own:
            outbound:
              timeout: short
        """,
    )
    import yaml

    resiliency = Resiliency.load([("r.yaml", yaml.safe_load(document))], "app")
    own = resiliency.component_outbound("own", "Statestore")
    assert (own.timeout, own.retry, own.circuit_breaker) == (1.0, None, None)  # kinds left out stay out
    state = resiliency.component_outbound("store", "Statestore")
    assert state.timeout == 0.3  # a bare integer is milliseconds
    assert state.retry is not None and state.retry.max_retries == 2 and state.circuit_breaker is None
    lock = resiliency.component_outbound("locks", "Lock")
    assert lock.retry is not None and lock.retry.duration == 2.0  # DefaultComponentRetryPolicy
    assert lock.circuit_breaker is not None and lock.circuit_breaker_name.startswith("DefaultLock")
    assert lock.circuit_breaker.trip is not None
    secrets = resiliency.component_outbound("vault", "Secretstore")
    assert secrets.circuit_breaker is None and secrets.timeout == 0.3
    inbound = resiliency.inbound("orders")  # deliveries: the Inbound names and the general ones
    assert inbound.timeout == 7.0 and inbound.retry is not None and inbound.retry.duration == 2.0


def _resources(tmp_path: Path, redis: str, resiliency: str) -> Path:
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", "state.redis", {"redisHost": redis}))
    (tmp_path / "other.yaml").write_text(component_yaml("plain", "state.redis", {"redisHost": redis}))
    (tmp_path / "resiliency.yaml").write_text(resiliency)
    return tmp_path


async def _save(client: httpx.AsyncClient, store: str, key: str, value: str) -> httpx.Response:
    return await client.post(f"/v1.0/state/{store}", json=[{"key": key, "value": value}], timeout=WAIT)


async def _until(condition: object, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, f"never: {what}"
        await asyncio.sleep(0.02)


async def test_a_save_issued_while_redis_is_down_succeeds_once_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "layotto.resiliency")
    policy = resiliency_yaml(
        """\
        retries:
          retryForever: {policy: constant, duration: 100ms, maxRetries: -1}
        """,
        """\
        components:
          statestore:
            outbound:
              retry: retryForever
        """,
    )
    with private_redis() as redis:
        async with running_sidecar(_resources(tmp_path, redis.address, policy)) as sidecar:
            assert (await _save(sidecar.client, "statestore", "k", "before")).status_code == 204
            redis.stop()
            pending = asyncio.create_task(_save(sidecar.client, "statestore", "k", "after"))
            await _until(lambda: caplog.text.count("Retrying in 100ms") >= 3, "three retries logged")
            assert not pending.done()
            # a component without a policy fails at once, as before
            unprotected = await _save(sidecar.client, "plain", "k", "x")
            assert unprotected.status_code == 500 and unprotected.json()["errorCode"] == "ERR_STATE_SAVE"
            redis.start()
            answer = await asyncio.wait_for(pending, WAIT)
            assert answer.status_code == 204, answer.text
            assert (await sidecar.client.get("/v1.0/state/statestore/k")).json() == "after"
            assert "Recovered processing operation component[statestore] output after" in caplog.text


async def test_the_breaker_opens_refuses_half_opens_and_closes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "layotto.resiliency")
    policy = resiliency_yaml(
        """\
        circuitBreakers:
          DefaultStatestoreComponentOutboundCircuitBreakerPolicy:
            maxRequests: 1
            timeout: 1s
            trip: consecutiveFailures >= 2
        """
    )
    with private_redis() as redis:
        async with running_sidecar(_resources(tmp_path, redis.address, policy)) as sidecar:
            client = sidecar.client
            redis.stop()
            for _ in range(2):  # the backend's own failures, each counted
                failed = await _save(client, "statestore", "k", "v")
                assert failed.status_code == 500 and "circuit breaker" not in failed.text
            name = "DefaultStatestoreComponentOutboundCircuitBreakerPolicy-statestore"
            assert f'Circuit breaker "{name}" changed state from closed to open' in caplog.text
            refused = await _save(client, "statestore", "k", "v")
            assert refused.status_code == 500
            assert refused.json() == {
                "errorCode": "ERR_STATE_SAVE",
                "message": "failed saving state in state store statestore: circuit breaker is open",
            }
            got = await client.get("/v1.0/state/statestore/k")
            assert got.status_code == 500
            assert got.json()["message"] == "fail to get k from state store statestore: circuit breaker is open"
            # half-open after its timeout: one probe; it fails while redis is down, and the breaker opens again
            await _until(lambda: sidecar_breaker_state(sidecar, name) == "half-open", "half-open")
            assert (await _save(client, "statestore", "k", "v")).status_code == 500
            assert caplog.text.count("changed state from half-open to open") == 1
            redis.start()
            await _until(lambda: sidecar_breaker_state(sidecar, name) == "half-open", "half-open again")
            assert (await _save(client, "statestore", "k", "v")).status_code == 204
            assert "changed state from half-open to closed" in caplog.text
            assert (await client.get("/v1.0/state/statestore/k")).json() == "v"


def sidecar_breaker_state(sidecar: object, name: str) -> str:
    """The state of the breaker called ``name`` in the sidecar's state block (read, as the layer would)."""
    from building_blocks.resiliency_layer import ComponentResiliency

    state = sidecar.runtime.core.state  # type: ignore[attr-defined]
    for layer in state.layers:
        if isinstance(layer, ComponentResiliency):
            for runner in layer.runners.values():
                if runner.breaker is not None and runner.breaker.name == name:
                    return runner.breaker.state
    raise AssertionError(f"no breaker {name}")


async def test_a_slow_store_times_out_per_attempt(tmp_path: Path) -> None:
    policy = resiliency_yaml(
        """\
        timeouts:
          quick: 200ms
        retries:
          twice: {policy: constant, duration: 10ms, maxRetries: 1}
        """,
        """\
        components:
          statestore:
            outbound: {timeout: quick, retry: twice}
        """,
    )
    with private_redis() as redis:
        async with running_sidecar(_resources(tmp_path, redis.address, policy)) as sidecar:
            import redis.asyncio as aioredis

            host, _, port = redis.address.partition(":")
            admin = aioredis.Redis(host=host, port=int(port))
            try:
                # once CLIENT PAUSE has answered, every write waits (up to 30 s, until UNPAUSE, which is no write)
                await admin.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
                answer = await _save(sidecar.client, "statestore", "k", "v")
                await admin.execute_command("CLIENT", "UNPAUSE")
            finally:
                await admin.aclose()
            assert answer.status_code == 500
            assert answer.json() == {
                "errorCode": "ERR_STATE_SAVE",
                "message": "failed saving state in state store statestore: context deadline exceeded",
            }
            assert (await _save(sidecar.client, "statestore", "k", "v")).status_code == 204


async def test_an_etag_conflict_is_neither_retried_nor_a_breaker_failure(tmp_path: Path) -> None:
    policy = resiliency_yaml(
        """\
        retries:
          DefaultRetryPolicy: {policy: constant, duration: 5s, maxRetries: -1}
        circuitBreakers:
          DefaultCircuitBreakerPolicy: {trip: consecutiveFailures >= 1, timeout: 60s}
        """
    )
    with private_redis() as redis:
        async with running_sidecar(_resources(tmp_path, redis.address, policy)) as sidecar:
            client = sidecar.client
            assert (await _save(client, "statestore", "k", "v")).status_code == 204
            for _ in range(3):  # answered at once (a retry would wait 5 s), and the breaker stays closed
                stale = [{"key": "k", "value": "w", "etag": "999"}]
                conflict = await asyncio.wait_for(client.post("/v1.0/state/statestore", json=stale), 4)
                assert conflict.status_code == 409
            assert (await _save(client, "statestore", "k", "w")).status_code == 204


async def test_every_api_answers_an_open_breaker_with_its_own_code(tmp_path: Path) -> None:
    policy = resiliency_yaml(
        """\
        circuitBreakers:
          DefaultComponentOutboundCircuitBreakerPolicy: {trip: consecutiveFailures >= 1, timeout: 60s}
        """
    )
    with private_redis() as redis:
        for name, kind in (
            ("locks", "lock.redis"),
            ("pubsub", "pubsub.redis"),
            ("seq", "sequencer.redis"),
            ("config", "configuration.redis"),
        ):
            (tmp_path / f"{name}.yaml").write_text(component_yaml(name, kind, {"redisHost": redis.address}))
        (tmp_path / "resiliency.yaml").write_text(policy)
        async with running_sidecar(tmp_path) as sidecar:
            client = sidecar.client
            calls = {
                "ERR_TRY_LOCK": lambda: client.post(
                    "/v1.0-alpha1/lock/locks", json={"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 5}
                ),
                "ERR_PUBSUB_PUBLISH_MESSAGE": lambda: client.post("/v1.0/publish/pubsub/orders", json={"a": 1}),
                "ERR_SEQUENCER_GET_NEXT_ID": lambda: client.post(
                    "/v1.0-alpha1/sequencer/seq", json={"key": "k", "options": {"increment": "STRONG"}}
                ),
                "ERR_CONFIGURATION_GET": lambda: client.get("/v1.0/configuration/config?key=k"),
            }
            for call in calls.values():  # healthy: each works
                assert (await call()).status_code < 300
            redis.stop()
            for code, call in calls.items():
                failed = await call()  # the store's own failure trips its breaker...
                assert failed.status_code == 500 and failed.json()["errorCode"] == code, failed.text
                assert "circuit breaker is open" not in failed.text
                refused = await call()  # ...which then answers at once, with the API's own code
                assert refused.status_code == 500, refused.text
                assert refused.json()["errorCode"] == code
                assert refused.json()["message"].endswith("circuit breaker is open"), refused.text
