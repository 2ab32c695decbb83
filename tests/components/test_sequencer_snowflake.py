"""``sequencer.snowflake`` in detail: the id layout, clock safety, and worker-id leases handed over between
sidecars (in Redis and in a SQLite file). Shared semantics are covered by tests/conformance."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError, InvalidOption, SpecError
from building_blocks.sequencer.base import NextIdRequest, SegmentRequest
from building_blocks.sequencer.snowflake import Generator, Layout, SnowflakeSequencer, now_ms
from building_blocks.sequencer.worker_lease import (
    FOREVER,
    Grant,
    RedisWorkerLease,
    SQLiteWorkerLease,
    WorkerLease,
)
from tests.services import require_redis

LAYOUT = Layout(41, 10, 12, 1_640_995_200_000)  # 2022-01-01


def generator(after: int = 0, until: float = FOREVER, start: int = 0, tolerance: int = 1000) -> Generator:
    return Generator(LAYOUT, Grant(5, after, until), start, tolerance)


def fields(snowflake: int) -> tuple[int, int, int]:
    return snowflake >> 22, (snowflake >> 12) & 1023, snowflake & 4095


# -- layout ----------------------------------------------------------------------------------------------------


def test_ids_are_milliseconds_worker_and_sequence() -> None:
    now = now_ms()
    first, millisecond = generator(start=now).reserve(3, now + 5)
    assert millisecond == now + 5
    assert fields(first) == (now + 5 - LAYOUT.epoch_ms, 5, 0)


def test_default_layout_from_metadata() -> None:
    layout = Layout.of(Metadata({}, "spec"))
    assert (layout.time_bits, layout.worker_bits, layout.seq_bits) == (41, 10, 12)
    assert layout.epoch_ms == 1_640_995_200_000


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"workerId": "1", "timeBits": "40"}, "must be 63"),
        ({"workerId": "1", "startTime": "yesterday"}, "'startTime' must be an ISO 8601 date"),
        ({"workerId": "1024"}, "'workerId' must be below 1024"),
        ({}, "exactly one of"),
        ({"workerId": "1", "redisHost": "x"}, "exactly one of"),
        ({"workerId": "1", "leaseTTL": "0s"}, "'leaseTTL' must be positive"),
    ],
)
def test_bad_metadata_fails_at_construction(metadata: dict[str, str], problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        SnowflakeSequencer("seq", Metadata(metadata, "spec"), ComponentContext())


# -- clock safety ------------------------------------------------------------------------------------------------


def test_a_generator_never_reuses_the_millisecond_it_started_in() -> None:
    now = now_ms()
    first, millisecond = generator(start=now).reserve(1, now)
    assert millisecond == now + 1 and fields(first)[2] == 0


def test_ids_keep_increasing_when_the_clock_goes_backwards() -> None:
    now = now_ms()
    gen = generator(start=now)
    a, ms_a = gen.reserve(1, now + 10)
    b, ms_b = gen.reserve(1, now + 3)  # the clock moved back 7 ms
    assert b > a and ms_b == ms_a == now + 10  # same millisecond, next sequence number


def test_a_clock_far_behind_is_refused_not_reused() -> None:
    now = now_ms()
    gen = generator(start=now, tolerance=1000)
    last, _ = gen.reserve(1, now + 5000)
    with pytest.raises(ComponentError, match="moved backwards"):
        gen.reserve(1, now)  # 5 s behind the last id
    after, _ = gen.reserve(1, now + 4500)  # within tolerance again: goes on after the last id
    assert after > last


def test_a_used_up_millisecond_moves_to_the_next() -> None:
    now = now_ms()
    gen = generator(start=now - 1)
    first, ms1 = gen.reserve(4000, now)
    second, ms2 = gen.reserve(200, now)  # only 96 left in ``now``
    assert (ms1, ms2) == (now, now + 1)
    assert fields(second)[2] == 0 and second > first + 3999


def test_nothing_past_the_lease() -> None:
    now = now_ms()
    gen = generator(start=now, until=now + 2)
    gen.reserve(1, now + 2)
    with pytest.raises(ComponentError, match="not renewed"):
        gen.reserve(1, now + 3)


def test_a_new_holder_starts_after_the_previous_holders_last_millisecond() -> None:
    now = now_ms()
    _, millisecond = generator(after=now + 500, start=now, tolerance=1000).reserve(1, now)
    assert millisecond == now + 501


async def test_an_id_is_not_answered_before_its_millisecond(tmp_path: Path) -> None:
    sequencer = SnowflakeSequencer("seq", Metadata({"workerId": "1"}, "spec"), ComponentContext())
    await sequencer.init()
    try:
        generated = [await sequencer.next_id(NextIdRequest("k")) for _ in range(50)]
        assert generated == sorted(set(generated))
        assert all(fields(i)[0] + LAYOUT.epoch_ms <= now_ms() for i in generated)
        with pytest.raises(InvalidOption, match="at most 4096"):
            await sequencer.segment(SegmentRequest("k", 4097))
    finally:
        await sequencer.close()


async def test_a_floor_above_the_next_id_fails_start_up() -> None:
    sequencer = SnowflakeSequencer("seq", Metadata({"workerId": "1"}, "spec"), ComponentContext())
    sequencer.floors = {"sequencer|||app||k": 2**62}
    with pytest.raises(ComponentError, match="biggerThan"):
        await sequencer.init()
    await sequencer.close()


# -- worker leases -------------------------------------------------------------------------------------------------


def sqlite_lease(tmp_path: Path, ttl: float) -> Callable[[], WorkerLease]:
    meta = Metadata({"connectionString": str(tmp_path / "workers.db")}, "spec")
    return lambda: SQLiteWorkerLease(meta, "seq", "ns", ttl)


def redis_lease(tmp_path: Path, ttl: float) -> Callable[[], WorkerLease]:
    from building_blocks._common.redis import pool_options

    options = pool_options(Metadata({"redisHost": require_redis()}, "spec"))
    namespace = f"test-snowflake-{uuid.uuid4().hex}"
    return lambda: RedisWorkerLease(options, namespace, ttl)


LEASES = {"sqlite": sqlite_lease, "redis": redis_lease}


@pytest.mark.parametrize("backend", list(LEASES))
async def test_leases_give_each_sidecar_its_own_worker_id(backend: str, tmp_path: Path) -> None:
    make = LEASES[backend](tmp_path, 5.0)
    first, second, third = make(), make(), make()
    for lease in (first, second, third):
        await lease.open()
    try:
        until = now_ms() + 5000
        assert (await first.acquire(2, until)).worker == 0
        assert (await second.acquire(2, until)).worker == 1
        with pytest.raises(ComponentError, match="all 2 snowflake worker ids are leased"):
            await third.acquire(2, until)
        assert await first.renew(until + 100) == until + 100
        await first.release(until - 4000)
        grant = await third.acquire(2, now_ms() + 5000)  # released: free at once
        assert grant.worker == 0 and grant.after == until - 4000
        assert await first.renew(until + 200) is None  # no longer the holder
    finally:
        for lease in (first, second, third):
            await lease.close()


@pytest.mark.parametrize("backend", list(LEASES))
async def test_a_crashed_holders_worker_id_is_taken_over_after_its_lease(backend: str, tmp_path: Path) -> None:
    make = LEASES[backend](tmp_path, 0.3)
    crashed, successor = make(), make()
    await crashed.open()
    await successor.open()
    try:
        crashed_until = now_ms() + 300
        assert (await crashed.acquire(1, crashed_until)).worker == 0
        with pytest.raises(ComponentError):
            await successor.acquire(1, now_ms() + 300)
        await asyncio.sleep(0.5)  # the crashed holder never renews or releases
        grant = await successor.acquire(1, now_ms() + 300)
        assert grant.worker == 0 and grant.after == crashed_until
        # Its ids start after everything the crashed holder could have given.
        _, millisecond = Generator(LAYOUT, grant, now_ms(), 1000).reserve(1, now_ms())
        assert millisecond > crashed_until
    finally:
        await crashed.close()
        await successor.close()


async def test_a_restarted_sidecar_goes_on_after_its_released_ids(tmp_path: Path) -> None:
    metadata = Metadata({"connectionString": str(tmp_path / "w.db")}, "spec")
    before = SnowflakeSequencer("seq", metadata, ComponentContext())
    await before.init()
    last = max([await before.next_id(NextIdRequest("k")) for _ in range(100)])
    await before.close()
    after = SnowflakeSequencer("seq", metadata, ComponentContext())
    await after.init()
    try:
        assert await after.next_id(NextIdRequest("k")) > last
    finally:
        await after.close()
