"""The sequencer conformance suite: every sequencer, through the HTTP API, held to the same behaviour.

Layotto's sequencer cases (Q-1..Q-5) plus uniqueness under concurrency, restarts and the WEAK segment
cache. Each case declares what it is: ``counter`` sequencers give 1, 2, 3... per key (snowflake ids follow
the clock instead), ``cached`` ones serve WEAK ids from a reserved segment, ``persistent`` ones survive a
restart. A new sequencer joins by adding one entry to ``CASES``.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.grpc.layotto import runtime_pb2
from tests.grpc.fronts import FRONTS, GrpcFront, grpc_front
from tests.services import require_postgres, require_redis
from tests.sidecar import Sidecar, component_yaml, running_sidecar

SEGMENT_SIZE = 10


@dataclass(frozen=True)
class SequencerCase:
    component_type: str
    metadata: Callable[[Path], dict[str, str]]
    counter: bool = True
    cached: bool = True
    persistent: bool = True
    shared: bool = True  # several sidecars of one app may use it at once


CASES = {
    "in-memory": SequencerCase("sequencer.in-memory", lambda _: {}, cached=False, persistent=False, shared=False),
    "sqlite": SequencerCase("sequencer.sqlite", lambda tmp: {"connectionString": str(tmp / "sequencer.db")}),
    "redis": SequencerCase("sequencer.redis", lambda _: {"redisHost": require_redis()}),
    "postgresql": SequencerCase(
        "sequencer.postgresql",
        lambda _: {"connectionString": require_postgres(), "tableName": "conformance_sequencer"},
    ),
    "snowflake-sqlite": SequencerCase(
        "sequencer.snowflake", lambda tmp: {"connectionString": str(tmp / "workers.db")}, counter=False, cached=False
    ),
    "snowflake-redis": SequencerCase(
        "sequencer.snowflake", lambda _: {"redisHost": require_redis()}, counter=False, cached=False
    ),
    # Each sidecar needs its own fixed worker id: two sidecars with the same one would give the same ids.
    "snowflake-fixed": SequencerCase(
        "sequencer.snowflake", lambda _: {"workerId": "7"}, counter=False, cached=False, shared=False
    ),
}
COMPONENT_TYPES = frozenset(case.component_type for case in CASES.values())  # checked by test_registry_coverage


@dataclass
class Ids:
    """Ids of one sidecar, through HTTP, or through gRPC (Layotto's GetNextId) when ``grpc`` is set; segments
    have no gRPC method and go over HTTP."""

    case: SequencerCase
    sidecar: Sidecar
    resources: Path
    grpc: GrpcFront | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        return self.sidecar.client

    async def next(self, key: str, increment: str | None = None) -> int:
        if self.grpc is not None:
            options = runtime_pb2.SequencerOptions(increment=increment or "WEAK")
            request = runtime_pb2.GetNextIdRequest(store_name="sequencer", key=key, options=options)
            return int((await self.grpc.layotto.GetNextId(request)).next_id)
        body: dict[str, object] = {"key": key}
        if increment is not None:
            body["options"] = {"increment": increment}
        response = await self.client.post("/v1.0-alpha1/sequencer/sequencer", json=body)
        assert response.status_code == 200, response.text
        next_id = response.json()["nextId"]
        assert isinstance(next_id, str)
        return int(next_id)

    async def segment(self, key: str, size: int) -> tuple[int, int]:
        response = await self.client.post("/v1.0-alpha1/sequencer/sequencer", json={"key": key, "size": size})
        assert response.status_code == 200, response.text
        body = response.json()
        assert isinstance(body["from"], str) and isinstance(body["to"], str)
        return int(body["from"]), int(body["to"])


def write_spec(resources: Path, case: SequencerCase, extra: dict[str, str] | None = None) -> None:
    metadata = {**case.metadata(resources), "segmentSize": str(SEGMENT_SIZE), **(extra or {})}
    (resources / "sequencer.yaml").write_text(component_yaml("sequencer", case.component_type, metadata))


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> SequencerCase:
    return CASES[request.param]


@pytest.fixture(params=FRONTS)
async def ids(request: pytest.FixtureRequest, case: SequencerCase, tmp_path: Path) -> AsyncIterator[Ids]:
    write_spec(tmp_path, case)
    if request.param == "http":
        async with running_sidecar(tmp_path) as sidecar:
            yield Ids(case, sidecar, tmp_path)
        return
    async with running_sidecar(tmp_path, grpc=True) as sidecar, grpc_front(sidecar) as front:
        yield Ids(case, sidecar, tmp_path, front)


@pytest.fixture
async def http_ids(case: SequencerCase, tmp_path: Path) -> AsyncIterator[Ids]:
    """For the cases about HTTP bodies."""
    write_spec(tmp_path, case)
    async with running_sidecar(tmp_path) as sidecar:
        yield Ids(case, sidecar, tmp_path)


def key() -> str:
    return uuid.uuid4().hex


# -- ids per key ------------------------------------------------------------------------------------


async def test_strong_ids_count_from_one_per_key(ids: Ids) -> None:
    a, b = key(), key()
    first = [await ids.next(a, "STRONG") for _ in range(3)]
    other = await ids.next(b, "STRONG")
    assert first == sorted(set(first)) and first[0] > 0
    if ids.case.counter:
        assert first == [1, 2, 3]
        assert other == 1  # keys are independent


async def test_weak_is_the_default_and_increases_in_one_sidecar(ids: Ids) -> None:
    k = key()
    weak = [await ids.next(k) for _ in range(SEGMENT_SIZE * 2 + 3)]
    assert weak == sorted(set(weak)) and weak[0] > 0
    if ids.case.counter:
        assert weak[0] == 1


async def test_weak_ids_come_from_a_reserved_segment(ids: Ids) -> None:
    k = key()
    first_weak = await ids.next(k, "WEAK")
    strong = await ids.next(k, "STRONG")
    if not ids.case.counter:
        assert strong > first_weak
        return
    assert first_weak == 1
    # The backend already gave the whole segment to this sidecar: the next STRONG id comes after it.
    assert strong == (SEGMENT_SIZE + 1 if ids.case.cached else 2)
    rest = [await ids.next(k, "WEAK") for _ in range(SEGMENT_SIZE - 1)]
    assert rest == (list(range(2, SEGMENT_SIZE + 1)) if ids.case.cached else list(range(3, SEGMENT_SIZE + 2)))


async def test_weak_and_strong_ids_are_unique_under_concurrency(ids: Ids) -> None:
    k = key()
    requests = [ids.next(k, "STRONG" if i % 3 == 0 else "WEAK") for i in range(600)]
    drawn = await asyncio.gather(*requests)
    assert len(set(drawn)) == len(drawn)
    assert min(drawn) > 0


async def test_each_caller_sees_strong_ids_strictly_increase(ids: Ids) -> None:
    k = key()

    async def caller() -> list[int]:
        return [await ids.next(k, "STRONG") for _ in range(20)]

    seen = await asyncio.gather(*(caller() for _ in range(10)))
    for mine in seen:
        assert all(a < b for a, b in itertools.pairwise(mine))
    everything = [i for mine in seen for i in mine]
    assert len(set(everything)) == len(everything)


# -- segments -------------------------------------------------------------------------------------------------


async def test_segments_are_contiguous_and_never_overlap(ids: Ids) -> None:
    k = key()
    first = await ids.segment(k, 5)
    second = await ids.segment(k, 5)
    assert first[1] - first[0] + 1 == 5 and second[1] - second[0] + 1 == 5
    assert second[0] > first[1]
    after = await ids.next(k, "STRONG")
    assert after > second[1]
    if ids.case.counter:
        assert (first, second) == ((1, 5), (6, 10))


# -- floors ------------------------------------------------------------------------------------------------------


async def test_bigger_than_floors_are_honoured(case: SequencerCase, tmp_path: Path) -> None:
    floored, free = key(), key()
    write_spec(tmp_path, case, {f"biggerThan.{floored}": "1000"})
    async with running_sidecar(tmp_path, app_id="floored") as sidecar:
        ids = Ids(case, sidecar, tmp_path)
        assert await ids.next(floored, "STRONG") > 1000
        assert await ids.next(floored) > 1000
        assert (await ids.segment(floored, 3))[0] > 1000
        if case.counter:
            assert await ids.next(free, "STRONG") == 1
    if case.counter and case.persistent:  # a floor below the counter changes nothing
        async with running_sidecar(tmp_path, app_id="floored") as sidecar:
            assert await Ids(case, sidecar, tmp_path).next(floored, "STRONG") > 1001 + SEGMENT_SIZE


async def test_a_floor_is_per_app_like_the_keys(case: SequencerCase, tmp_path: Path) -> None:
    if not case.counter:
        pytest.skip("snowflake ids are far above any test floor")
    k = key()
    write_spec(tmp_path, case, {f"biggerThan.{k}": "500"})
    async with running_sidecar(tmp_path) as first, running_sidecar(tmp_path) as second:
        assert await Ids(case, first, tmp_path).next(k, "STRONG") == 501
        assert await Ids(case, second, tmp_path).next(k, "STRONG") == 501  # another app id, another counter


# -- uniqueness across restarts and sidecars -------------------------------------------------------------------------


async def test_a_restart_does_not_reuse_ids(case: SequencerCase, tmp_path: Path) -> None:
    if not case.persistent:
        pytest.skip("ids live in the sidecar")
    write_spec(tmp_path, case)
    k = key()
    async with running_sidecar(tmp_path, app_id="restarting") as sidecar:
        ids = Ids(case, sidecar, tmp_path)
        before = [await ids.next(k) for _ in range(3)] + [await ids.next(k, "STRONG")]
    async with running_sidecar(tmp_path, app_id="restarting") as sidecar:
        ids = Ids(case, sidecar, tmp_path)
        after = [await ids.next(k) for _ in range(3)] + [await ids.next(k, "STRONG")]
    assert min(after) > max(before)


async def test_two_sidecars_of_one_app_share_the_sequence(case: SequencerCase, tmp_path: Path) -> None:
    if not case.shared:
        pytest.skip("the sequence is not shared between sidecars")
    write_spec(tmp_path, case)
    k = key()
    async with running_sidecar(tmp_path, app_id="shared") as one, running_sidecar(tmp_path, app_id="shared") as two:
        a, b = Ids(case, one, tmp_path), Ids(case, two, tmp_path)
        drawn = await asyncio.gather(
            *[(a if i % 2 else b).next(k, "STRONG" if i % 5 == 0 else None) for i in range(400)]
        )
    assert len(set(drawn)) == len(drawn)


# -- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Key is empty in sequencer store sequencer"),
        ({"key": ""}, "Key is empty in sequencer store sequencer"),
        (
            {"key": "k", "options": {"increment": "SOMETIMES"}},
            "options.increment is illegal: 'SOMETIMES' (WEAK or STRONG)",
        ),
        ({"key": "a||b"}, "input key/keyPrefix 'a||b' can't contain '||'"),
        ({"key": "k", "size": 0}, "size must be a positive integer in sequencer store sequencer, got 0"),
    ],
    ids=["no-key", "empty-key", "bad-increment", "separator", "zero-size"],
)
async def test_bad_requests_are_400(http_ids: Ids, body: dict[str, object], message: str) -> None:
    ids = http_ids
    response = await ids.client.post("/v1.0-alpha1/sequencer/sequencer", json=body)
    assert response.status_code == 400
    assert response.json() == {"errorCode": "ERR_MALFORMED_REQUEST", "message": message}
