"""State get and save through a sidecar (Redis, and the embedded SQLite default) against the same operation
done directly by the client and by the bare ASGI app, in the same run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from perf.bench import Bench
from perf.clients import RedisState, SqliteStore, redis_client, state_key
from perf.environment import Unavailable
from perf.loadgen import CallTarget, HttpTarget, http_request
from perf.payloads import JSON, value
from perf.scenarios.common import Scenario, latency_result, probe, require

__all__ = ("SCENARIOS", "seed")

_ROLES = {"redis": "redis", "sqlite": "default"}
_DIRECT = {"redis": "direct (redis-py)", "sqlite": "direct (sqlite3)"}


def key_of(bench: Bench) -> str:
    return f"perf-key-{bench.env.run_id}"


async def seed(bench: Bench, store: str) -> tuple[int, str]:
    """Saves the 1 KB value under the run's key through the sidecar; its port and the stored key."""
    sidecar = bench.env.sidecar(_ROLES[store])
    key = key_of(bench)
    body = orjson.dumps([{"key": key, "value": value(bench.config.payload)}])
    require(await probe(sidecar.port, "POST", "/v1.0/state/statestore", body, **JSON), 204, "saving state")
    require(await probe(sidecar.port, "GET", f"/v1.0/state/statestore/{key}"), 200, "getting state")
    return sidecar.port, state_key(bench.env.app_id(_ROLES[store]), key)


async def _run(bench: Bench, store: str, operation: str) -> dict[str, Any]:
    env, name = bench.env, f"state-{operation}-{store}"
    sidecar = env.sidecar(_ROLES[store])
    port, stored_key = await seed(bench, store)
    key = key_of(bench)
    save_key = f"perf-save-{env.run_id}"
    item = value(bench.config.payload)
    save_body = orjson.dumps([{"key": save_key, "value": item}])
    stored_value = orjson.dumps(item)
    stored_save_key = state_key(env.app_id(_ROLES[store]), save_key)
    runs: list[dict[str, Any]] = []
    notes: list[str] = []

    # direct
    closers: list[Callable[[], Awaitable[None]]] = []
    if store == "redis":
        client = redis_client(env.redis)
        closers.append(client.aclose)
        redis_state = RedisState(client)
        if operation == "get":

            async def call(index: int, scheduled: int) -> None:
                if await redis_state.get(stored_key) is None:
                    raise LookupError("missing key")
        else:

            async def call(index: int, scheduled: int) -> None:
                await redis_state.save(stored_save_key, stored_value)
    else:
        sqlite = await SqliteStore(str(env.sqlite_path())).open()
        closers.append(sqlite.close)
        if operation == "get":

            async def call(index: int, scheduled: int) -> None:
                if await sqlite.get(stored_key) is None:
                    raise LookupError("missing key")
        else:

            async def call(index: int, scheduled: int) -> None:
                await sqlite.save(stored_save_key, stored_value)

    try:
        runs.append(await bench.measure(name, _DIRECT[store], CallTarget("direct", call)))
    finally:
        for close in closers:
            await close()

    # bare ASGI
    try:
        baseline = env.app("baseline")
    except Unavailable as exc:
        notes.append(f"bare ASGI baseline skipped: {exc}")
    else:
        request = (
            http_request("GET", f"/{store}/{key}")
            if operation == "get"
            else http_request("POST", f"/{store}", save_body, JSON)
        )
        runs.append(await bench.measure(name, "bare ASGI", HttpTarget("asgi", baseline.port, request)))

    # sidecar
    request = (
        http_request("GET", f"/v1.0/state/statestore/{key}")
        if operation == "get"
        else http_request("POST", "/v1.0/state/statestore", save_body, JSON)
    )
    runs.append(await bench.measure(name, "sidecar", HttpTarget("sidecar", port, request), [sidecar]))
    return latency_result(runs, notes)


def _scenario(store: str, operation: str) -> Scenario:
    async def run(bench: Bench) -> dict[str, Any]:
        return await _run(bench, store, operation)

    label = "Redis" if store == "redis" else "embedded SQLite default"
    return Scenario(
        f"state-{operation}-{store}",
        f"state {operation} on {label}",
        "latency",
        frozenset({_ROLES[store], "baseline"}),
        3,
        run,
    )


SCENARIOS = [_scenario(store, op) for store in ("redis", "sqlite") for op in ("get", "save")]
