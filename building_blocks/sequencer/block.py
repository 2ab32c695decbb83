"""The Sequencer building block: Layotto's sequencer API, in Dapr's style, in front of the sequencers.

It takes typed requests (decoding is the front's) and checks them (any sequencer loaded, the key, the
store's name, the segment's size), prefixes keys as Layotto does (``sequencer|||<keyPrefix>||<key>``;
``keyPrefix`` metadata: appid by default), serves WEAK ids from per-key segments reserved in the backend,
and calls the sequencers through ``Block.operation``.

Block-level metadata of every sequencer component:
* ``biggerThan.<key>``: every id of ``<key>`` is bigger than this number (applied by the component at start).
* ``segmentCacheEnable`` (true) and ``segmentSize`` (50; Layotto's documented name ``segmentStep`` is read
  too): WEAK ids come from a segment of that many ids reserved at once, so one backend call serves
  ``segmentSize`` ids. Ids left in a segment when the sidecar stops are never used. Components whose ids
  cost no round trip (in-memory, snowflake) are never cached.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from building_blocks.block import Block, Entry
from building_blocks.component import Metadata
from building_blocks.errors import ComponentNotConfigured, InvalidRequest, Operation, SpecError
from building_blocks.keyprefix import SEPARATOR, KeyPrefixer
from building_blocks.sequencer.base import MAX_ID, Increment, NextIdRequest, Segment, SegmentRequest, Sequencer

__all__ = ("SequencerBlock",)

KEY_PREFIX = "sequencer|||"
FLOOR_PREFIX = "biggerthan."
DEFAULT_SEGMENT_SIZE = 50


class _Segment:
    """The WEAK ids of one key not given out yet: ``next`` to ``last``."""

    __slots__ = ("last", "lock", "next")

    def __init__(self) -> None:
        self.next = 1
        self.last = 0
        self.lock = asyncio.Lock()


@dataclass(slots=True)
class _Settings:
    """The block's settings for one sequencer, and its WEAK segments by stored key."""

    segment_size: int  # 0: WEAK ids are not cached
    segments: dict[str, _Segment] = field(default_factory=dict)


_Entry = Entry[Sequencer, _Settings]


def _floors(meta: Metadata) -> dict[str, int]:
    """``biggerThan.<key>`` entries of the metadata, by user key."""
    floors = {}
    for name in meta:
        if not name.lower().startswith(FLOOR_PREFIX):
            continue
        key = name[len(FLOOR_PREFIX) :]
        value = meta.integer(name, 0)
        if not key or SEPARATOR in key:
            raise SpecError(f"{meta.where}: metadata '{name}' must name a key without '||'")
        if not 0 <= value < MAX_ID:
            raise SpecError(f"{meta.where}: metadata '{name}' must be between 0 and {MAX_ID - 1}")
        floors[key] = value
    return floors


class SequencerBlock(Block[Sequencer, _Settings]):
    """All loaded sequencers, and the sequencer API's operations on them."""

    kind = "sequencer store"
    type_prefix = "sequencer"
    component_base = Sequencer
    prefixes_keys = True

    def settings(self, component: Sequencer, prefixer: KeyPrefixer) -> _Settings:
        """The WEAK segment size; gives the component its floors (``biggerThan.<key>``) as stored keys."""
        meta = component.metadata
        component.floors = {KEY_PREFIX + prefixer.prefix + k: v for k, v in _floors(meta).items()}
        size = meta.integer("segmentSize", meta.integer("segmentStep", DEFAULT_SEGMENT_SIZE))
        if size < 1:
            raise SpecError(f"{meta.where}: metadata 'segmentSize' must be at least 1")
        cached = component.segment_cache and meta.boolean("segmentCacheEnable", True) and size > 1
        return _Settings(size if cached else 0)

    def _validated(self, name: str, key: str) -> _Entry:
        """The sequencer's entry, once ``key`` passed the checks, in Layotto's order."""
        if not self.components:
            raise ComponentNotConfigured(self.kind, name)
        if not key:
            raise InvalidRequest(f"Key is empty in sequencer store {name}")
        if SEPARATOR in key:
            raise InvalidRequest(f"input key/keyPrefix '{key}' can't contain '||'")
        return self.entry(name)

    async def next_id(self, name: str, request: NextIdRequest) -> int:
        """The next id of ``request.key``: WEAK ones from the block's segment when the sequencer has one."""
        entry = self._validated(name, request.key)
        key = KEY_PREFIX + entry.prefixer.key(name, request.key)
        if request.increment is Increment.WEAK and entry.settings.segment_size:
            return await self.operation(Operation.SEQUENCER_NEXT_ID, name, request.key, self._weak, entry, key)
        stored = NextIdRequest(key, request.increment, request.metadata)
        return await self.operation(Operation.SEQUENCER_NEXT_ID, name, request.key, entry.component.next_id, stored)

    async def segment(self, name: str, request: SegmentRequest) -> Segment:
        """``request.size`` consecutive ids reserved for the caller."""
        entry = self._validated(name, request.key)
        if not 0 < request.size <= MAX_ID:
            raise InvalidRequest(f"size must be a positive integer in sequencer store {name}, got {request.size!r}")
        stored = SegmentRequest(KEY_PREFIX + entry.prefixer.key(name, request.key), request.size, request.metadata)
        return await self.operation(Operation.SEQUENCER_SEGMENT, name, request.key, entry.component.segment, stored)

    @staticmethod
    async def _weak(entry: _Entry, key: str) -> int:
        settings = entry.settings
        segment = settings.segments.get(key)
        if segment is None:
            segment = settings.segments[key] = _Segment()
        while segment.next > segment.last:
            async with segment.lock:
                if segment.next > segment.last:
                    reserved = await entry.component.segment(SegmentRequest(key, settings.segment_size))
                    segment.next, segment.last = reserved.first, reserved.last
        next_id = segment.next
        segment.next += 1
        return next_id
