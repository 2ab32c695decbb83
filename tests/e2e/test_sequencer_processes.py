"""Sequencers across real sidecar processes sharing a backend: 10,000 ids drawn concurrently by two
sidecars are all different, STRONG ids strictly increase, restarts reuse nothing, floors hold, and WEAK ids
really come from segments reserved in the backend (checked in the backend itself)."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from tests.e2e.sidecars import Sidecars
from tests.services import require_postgres, require_redis
from tests.sidecar import component_yaml

APP_ID = "numbers"
SEGMENT_SIZE = 100

# Each test's pytest timeout is sized by its work, so a busy machine slows a test without failing it: 10,000
# ids took 6-13 s beside other engineers' tests, 14-28 s with two CPU burners as well (up to ~3 ms an id).
START_BUDGET = 60.0  # seconds to start the two sidecars (Sidecars.START_TIMEOUT) or restart them
ID_BUDGET = 0.02  # seconds per id drawn: about 7 times the cost measured on the busiest machine


def budget(ids: int, starts: int = 1) -> pytest.MarkDecorator:
    """A pytest timeout for a test that starts the sidecars ``starts`` times and draws ``ids`` ids."""
    return pytest.mark.timeout(starts * START_BUDGET + ids * ID_BUDGET)


@dataclass(frozen=True)
class Backend:
    component_type: str
    metadata: Callable[[Path], dict[str, str]]
    counter: bool = True  # one shared counter per key (snowflake: clock + worker id)


BACKENDS = {
    "sqlite": Backend("sequencer.sqlite", lambda tmp: {"connectionString": str(tmp / "sequencer.db")}),
    "redis": Backend("sequencer.redis", lambda _: {"redisHost": require_redis()}),
    "postgresql": Backend(
        "sequencer.postgresql", lambda _: {"connectionString": require_postgres(), "tableName": "e2e_sequencer"}
    ),
    "snowflake-sqlite": Backend(
        "sequencer.snowflake", lambda tmp: {"connectionString": str(tmp / "workers.db")}, counter=False
    ),
    "snowflake-redis": Backend(
        "sequencer.snowflake",
        lambda tmp: {"redisHost": require_redis(), "leaseTTL": "3s"},
        counter=False,
    ),
}


@dataclass
class Setup:
    backend: Backend
    resources: Path
    sidecars: Sidecars


def write_spec(resources: Path, backend: Backend, extra: dict[str, str] | None = None) -> None:
    metadata = {**backend.metadata(resources), "segmentSize": str(SEGMENT_SIZE), **(extra or {})}
    (resources / "sequencer.yaml").write_text(component_yaml("sequencer", backend.component_type, metadata))


@pytest.fixture(params=list(BACKENDS))
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    backend = BACKENDS[request.param]
    write_spec(tmp_path, backend)
    with Sidecars(tmp_path, f"{APP_ID}-{uuid.uuid4().hex[:8]}") as sidecars:
        yield Setup(backend, tmp_path, sidecars)


async def draw(http: httpx.AsyncClient, url: str, key: str, increment: str = "WEAK") -> int:
    response = await http.post(
        f"{url}/v1.0-alpha1/sequencer/sequencer", json={"key": key, "options": {"increment": increment}}
    )
    assert response.status_code == 200, response.text
    return int(response.json()["nextId"])


async def draw_concurrently(urls: list[str], key: str, count: int, concurrency: int = 8) -> list[int]:
    """``count`` ids, every 4th STRONG, from all ``urls`` at once by ``concurrency`` clients (more clients
    only slow the httpx client down)."""
    numbers = iter(range(count))
    drawn: list[int] = []

    async def client(http: httpx.AsyncClient) -> None:
        for n in numbers:
            drawn.append(await draw(http, urls[n % len(urls)], key, "STRONG" if n % 4 == 0 else "WEAK"))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return drawn


@budget(ids=10_000)
async def test_ten_thousand_ids_from_two_sidecars_are_unique(setup: Setup) -> None:
    drawn = await draw_concurrently(setup.sidecars.urls, uuid.uuid4().hex, 10_000)
    assert len(drawn) == 10_000
    assert len(set(drawn)) == 10_000
    assert min(drawn) > 0


@budget(ids=600)
async def test_strong_ids_strictly_increase(setup: Setup) -> None:
    key = uuid.uuid4().hex
    first, second = setup.sidecars.urls
    async with httpx.AsyncClient(timeout=30) as http:
        if setup.backend.counter:  # one counter: increasing for a caller going from sidecar to sidecar
            alternating = [
                await draw(http, url, key, "STRONG") for url in itertools.islice(itertools.cycle((first, second)), 200)
            ]
            assert all(a < b for a, b in itertools.pairwise(alternating))
        for url in (first, second):  # every backend: increasing through one sidecar
            mine = [await draw(http, url, key, "STRONG") for _ in range(200)]
            assert all(a < b for a, b in itertools.pairwise(mine))


@budget(ids=2_000, starts=2)
async def test_restarting_both_sidecars_reuses_no_id(setup: Setup) -> None:
    key = uuid.uuid4().hex
    before = await draw_concurrently(setup.sidecars.urls, key, 1_000)
    setup.sidecars.restart()
    after = await draw_concurrently(setup.sidecars.urls, key, 1_000)
    assert min(after) > max(before)


@budget(ids=500, starts=2)
async def test_floors_are_honoured_by_every_sidecar(setup: Setup) -> None:
    if not setup.backend.counter:
        pytest.skip("snowflake floors are checked at start-up (tests/components/test_sequencer_snowflake.py)")
    key = uuid.uuid4().hex
    setup.sidecars.stop()
    write_spec(setup.resources, setup.backend, {f"biggerThan.{key}": "1000000"})
    setup.sidecars.start()
    drawn = await draw_concurrently(setup.sidecars.urls, key, 500)
    assert min(drawn) == 1_000_001 and len(set(drawn)) == 500


# -- the WEAK segment cache, seen in the backend -----------------------------------------------------------------


async def stored_counter(setup: Setup, key: str) -> int:
    stored = f"sequencer|||{setup.sidecars.app_id}||{key}"
    match setup.backend.component_type:
        case "sequencer.sqlite":
            with sqlite3.connect(setup.resources / "sequencer.db") as db:
                return int(db.execute("SELECT value FROM sequencer WHERE key = ?", (stored,)).fetchone()[0])
        case "sequencer.redis":
            server = redis.Redis.from_url(f"redis://{require_redis()}")
            try:
                return int(server.get(stored) or 0)
            finally:
                server.close()
        case _:
            fields = dict(part.split("=", 1) for part in require_postgres().split())
            connection = await asyncpg.connect(
                host=fields.get("host"),
                port=fields.get("port"),
                user=fields.get("user"),
                database=fields.get("database"),
            )
            try:
                return int(await connection.fetchval("SELECT value FROM e2e_sequencer WHERE key = $1", stored))
            finally:
                await connection.close()


@budget(ids=SEGMENT_SIZE + 3)
async def test_weak_ids_come_from_segments_reserved_in_the_backend(setup: Setup) -> None:
    if not setup.backend.counter:
        pytest.skip("snowflake ids cost no backend call")
    key = uuid.uuid4().hex
    first, second = setup.sidecars.urls
    async with httpx.AsyncClient(timeout=30) as http:
        assert await draw(http, first, key) == 1
        assert await stored_counter(setup, key) == SEGMENT_SIZE  # one call reserved a whole segment
        rest = [await draw(http, first, key) for _ in range(SEGMENT_SIZE - 1)]
        assert rest == list(range(2, SEGMENT_SIZE + 1))
        assert await stored_counter(setup, key) == SEGMENT_SIZE  # ... and served them without the backend
        assert await draw(http, second, key) == SEGMENT_SIZE + 1  # the other sidecar reserves the next one
        assert await stored_counter(setup, key) == 2 * SEGMENT_SIZE
        assert await draw(http, first, key) == 2 * SEGMENT_SIZE + 1
        assert await draw(http, first, key, "STRONG") == 3 * SEGMENT_SIZE + 1  # STRONG: straight from the backend
