"""``sequencer.snowflake``: ids made by the sidecar itself from the clock, a worker id and a sequence number.

An id is ``milliseconds since startTime << (workerBits + seqBits) | worker << seqBits | sequence`` (by
default 41 + 10 + 12 bits: 69 years, 1024 workers, 4096 ids per millisecond per worker). No backend call
is made per id, so WEAK and STRONG are the same: ids are unique across sidecars (each has its own worker id)
and strictly increasing per sidecar; across sidecars they follow the clocks, not a shared counter.

Clock safety: the generator never reuses a millisecond it has left. When the clock goes backwards (or a
millisecond's 4096 ids are used up) it goes on from its last millisecond, waiting for the clock to catch up
before answering, and refuses ids (``ERR_SEQUENCER_GET_NEXT_ID``) when that would mean waiting more than
``maxClockBackward``. A leased worker id also bounds ids by the lease (see ``worker_lease``), so a restart
or another sidecar taking the worker id over never repeats an id, whatever the clocks say.

Metadata, one worker source: ``workerId`` (fixed; each sidecar needs its own), or ``redisHost`` (+ the
connection settings of ``building_blocks._common.redis``): a lease in Redis, or ``connectionString``: a
lease in that SQLite file. Then ``leaseTTL`` (10s; renewed every third of it), ``timeBits`` (41),
``workerBits`` (10), ``seqBits`` (12; the three make 63), ``startTime`` (``2022-01-01T00:00:00Z``, as
Layotto), ``maxClockBackward`` (1s), and the block-level settings; ``biggerThan.<key>`` floors are checked
at start (a floor at or above the next id fails start-up).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from building_blocks._common import periodic
from building_blocks._common.metadata import SEQUENCER, duration, integer, known_names, parse, read, text
from building_blocks._common.redis import RedisSettings
from building_blocks._common.sqlite import SQLiteSettings
from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError, InvalidOption, SpecError
from building_blocks.sequencer.base import NextIdRequest, Segment, SegmentRequest, Sequencer
from building_blocks.sequencer.worker_lease import (
    FixedWorker,
    Grant,
    RedisWorkerLease,
    SQLiteWorkerLease,
    WorkerLease,
)

__all__ = ("Generator", "Layout", "SnowflakeSequencer")

log = logging.getLogger(__name__)
_DEFAULT_START = "2022-01-01T00:00:00Z"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class SnowflakeMetadata:
    """Its own names; the Redis or SQLite connection settings are read when ``redisHost`` or
    ``connectionString`` chooses that lease."""

    worker_id: int | None = integer("workerId", None)
    redis_host: str = text("redisHost")
    connection_string: str = text("connectionString")
    lease_ttl: float = duration("leaseTTL", 10.0)
    max_clock_backward: float = duration("maxClockBackward", 1.0)
    time_bits: int = integer("timeBits", 41)
    worker_bits: int = integer("workerBits", 10)
    seq_bits: int = integer("seqBits", 12)
    start_time: str = text("startTime", _DEFAULT_START)


_LEASE_NAMES = (*known_names(RedisSettings), *known_names(SQLiteSettings))


class Layout:
    """How the 63 bits of an id are shared, and the millisecond counted as 0."""

    def __init__(self, time_bits: int, worker_bits: int, seq_bits: int, epoch_ms: int) -> None:
        self.time_bits = time_bits
        self.worker_bits = worker_bits
        self.seq_bits = seq_bits
        self.epoch_ms = epoch_ms
        self.workers = 1 << worker_bits
        self.sequences = 1 << seq_bits

    @classmethod
    def of(cls, meta: Metadata) -> Layout:
        return cls.declared(read(SnowflakeMetadata, meta), meta.where)

    @classmethod
    def declared(cls, settings: SnowflakeMetadata, where: str) -> Layout:
        time_bits, worker_bits, seq_bits = settings.time_bits, settings.worker_bits, settings.seq_bits
        if time_bits + worker_bits + seq_bits != 63 or min(time_bits, worker_bits, seq_bits) < 1:
            raise SpecError(f"{where}: metadata 'timeBits' + 'workerBits' + 'seqBits' must be 63, each at least 1")
        start = settings.start_time
        try:
            epoch = datetime.fromisoformat(start)
        except ValueError:
            raise SpecError(f"{where}: metadata 'startTime' must be an ISO 8601 date, got {start!r}") from None
        if epoch.tzinfo is None:
            epoch = epoch.replace(tzinfo=UTC)
        return cls(time_bits, worker_bits, seq_bits, int(epoch.timestamp() * 1000))

    def id(self, millisecond: int, worker: int, sequence: int) -> int:
        offset = millisecond - self.epoch_ms
        if not 0 <= offset < 1 << self.time_bits:
            raise ComponentError(f"millisecond {millisecond} does not fit the {self.time_bits} time bits")
        return (offset << (self.worker_bits + self.seq_bits)) | (worker << self.seq_bits) | sequence


class Generator:
    """The ids of one worker: never a millisecond before ``last``, never one after ``until`` (the lease)."""

    def __init__(self, layout: Layout, grant: Grant, start: int, tolerance_ms: int) -> None:
        self.layout = layout
        self.worker = grant.worker
        self.until = grant.until
        self.last = max(grant.after, start)
        self.used = layout.sequences  # ``last`` counts as used up: the first id is in a later millisecond
        self.tolerance_ms = tolerance_ms

    def reserve(self, count: int, now: int) -> tuple[int, int]:
        """The first of ``count`` consecutive ids, and their millisecond (maybe ahead of ``now``)."""
        millisecond = max(now, self.last)
        sequence = self.used if millisecond == self.last else 0
        if sequence + count > self.layout.sequences:
            millisecond, sequence = millisecond + 1, 0
        if millisecond > self.until:
            raise ComponentError(f"the lease of snowflake worker {self.worker} was not renewed in time")
        if millisecond - now > self.tolerance_ms:
            raise ComponentError(
                f"the clock is {millisecond - now} ms behind the last id given (it moved backwards); refusing ids"
            )
        first = self.layout.id(millisecond, self.worker, sequence)
        self.last, self.used = millisecond, sequence + count
        return first, millisecond


class SnowflakeSequencer(Sequencer):
    segment_cache: ClassVar[bool] = False

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        settings = parse(SnowflakeMetadata, metadata, (*SEQUENCER, *_LEASE_NAMES))
        self._layout = Layout.declared(settings, metadata.where)
        self._ttl = settings.lease_ttl
        self._tolerance_ms = int(settings.max_clock_backward * 1000)
        if self._ttl <= 0 or self._tolerance_ms < 0:
            raise SpecError(
                f"{metadata.where}: metadata 'leaseTTL' must be positive and 'maxClockBackward' not negative"
            )
        self._lease = self._worker_source(settings, metadata)
        self._generator: Generator | None = None
        self._renewal: asyncio.Task[None] | None = None

    def _worker_source(self, settings: SnowflakeMetadata, meta: Metadata) -> WorkerLease:
        given = (settings.worker_id is not None, bool(settings.redis_host), bool(settings.connection_string))
        if sum(given) != 1:
            raise SpecError(f"{meta.where}: give exactly one of metadata 'workerId', 'redisHost', 'connectionString'")
        namespace = f"sequencer|||snowflake||{self.name}"
        if settings.worker_id is not None:
            worker = settings.worker_id
            if not 0 <= worker < self._layout.workers:
                raise SpecError(f"{meta.where}: metadata 'workerId' must be below {self._layout.workers}")
            return FixedWorker(worker)
        if settings.redis_host:
            return RedisWorkerLease(read(RedisSettings, meta).pool_options(), namespace, self._ttl)
        return SQLiteWorkerLease(meta, self.name, namespace, self._ttl)

    async def init(self) -> None:
        await self._lease.open()
        grant = await self._lease.acquire(self._layout.workers, self._lease_end())
        self._generator = Generator(self._layout, grant, now_ms(), self._tolerance_ms)
        log.info("%s: snowflake worker id %d", self.name, grant.worker)
        self._check_floors(self._generator)
        if self._lease.renewable:
            self._renewal = periodic.every(self._ttl / 3, self._renew, f"{self.name}-worker-lease")

    def _lease_end(self) -> int:
        return now_ms() + int(self._ttl * 1000)

    def _check_floors(self, generator: Generator) -> None:
        lowest = self._layout.id(generator.last + 1, generator.worker, 0)
        for key, floor in self.floors.items():
            if floor >= lowest:
                raise ComponentError(f"biggerThan {floor} of {key} is not below the next snowflake id {lowest}")

    async def _renew(self) -> None:
        generator = self._current()
        until = await self._lease.renew(self._lease_end())
        if until is not None:
            generator.until = until
            return
        log.warning("%s: the lease of worker %d was lost; leasing a worker id again", self.name, generator.worker)
        grant = await self._lease.acquire(self._layout.workers, self._lease_end())
        self._generator = Generator(self._layout, grant, generator.last, self._tolerance_ms)

    async def close(self) -> None:
        await periodic.stop(self._renewal)
        self._renewal = None
        generator, self._generator = self._generator, None
        try:
            if generator is not None and self._lease.renewable:
                await self._lease.release(generator.last)
        except ComponentError as exc:
            log.warning("%s: releasing the worker id: %s", self.name, exc)
        finally:
            await self._lease.close()

    def _current(self) -> Generator:
        if self._generator is None:
            raise ComponentError(f"{self.name}: not initialised")
        return self._generator

    async def next_id(self, request: NextIdRequest) -> int:
        return (await self.segment(SegmentRequest(request.key, 1, request.metadata))).first

    async def segment(self, request: SegmentRequest) -> Segment:
        if request.size > self._layout.sequences:
            raise InvalidOption(f"a snowflake segment holds at most {self._layout.sequences} ids")
        now = now_ms()
        first, millisecond = self._current().reserve(request.size, now)
        if millisecond > now:  # never answer with an id of a millisecond still to come
            await asyncio.sleep((millisecond - now) / 1000)
        return Segment(first, first + request.size - 1)
