"""The Sequencer building block: Layotto's sequencer API, in Dapr's style, in front of the sequencers.

It validates requests (any sequencer loaded, the key, the options, the store's name), prefixes keys as
Layotto does (``sequencer|||<keyPrefix>||<key>``; ``keyPrefix`` metadata: appid by default), serves WEAK
ids from per-key segments reserved in the backend, and calls the sequencers through ``Block.operation``.

Block-level metadata of every sequencer component:
* ``biggerThan.<key>``: every id of ``<key>`` is bigger than this number (applied by the component at start).
* ``segmentCacheEnable`` (true) and ``segmentSize`` (50; Layotto's documented name ``segmentStep`` is read
  too): WEAK ids come from a segment of that many ids reserved at once, so one backend call serves
  ``segmentSize`` ids. Ids left in a segment when the sidecar stops are never used. Components whose ids
  cost no round trip (in-memory, snowflake) are never cached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from building_blocks.block import Block, Entry
from building_blocks.component import Metadata
from building_blocks.errors import ComponentNotConfigured, InvalidRequest, Operation, SpecError
from building_blocks.keyprefix import SEPARATOR, KeyPrefixer
from building_blocks.sequencer.base import MAX_ID, Increment, NextIdRequest, Segment, SegmentRequest, Sequencer

__all__ = ("SequencerBlock",)

KEY_PREFIX = "sequencer|||"
FLOOR_PREFIX = "biggerthan."
DEFAULT_SEGMENT_SIZE = 50
_BAD_BODY = "failed deserializing HTTP body: "
_INCREMENTS = {"WEAK": Increment.WEAK, "STRONG": Increment.STRONG, 0: Increment.WEAK, 1: Increment.STRONG}


@dataclass(frozen=True, slots=True)
class _Body:
    key: str
    increment: Any
    metadata: Mapping[str, str]
    size: Any


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


def _parse(body: Any) -> _Body:
    if not isinstance(body, dict):
        raise InvalidRequest(f"{_BAD_BODY}the body must be a JSON object")
    key = body.get("key")
    if key is not None and not isinstance(key, str):
        raise InvalidRequest(f"{_BAD_BODY}key: invalid value for string type: {key!r}")
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest(f"{_BAD_BODY}options must be an object")
    metadata = body.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise InvalidRequest(f"{_BAD_BODY}metadata must be an object of strings")
    increment = (options or {}).get("increment")
    return _Body(key or "", increment, metadata or {}, body.get("size"))


def _increment(value: Any) -> Increment:
    if value is None or value == "":
        return Increment.WEAK
    found = _INCREMENTS.get(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
    if found is None:
        raise InvalidRequest(f"options.increment is illegal: {value!r} (WEAK or STRONG)")
    return found


def _size(value: Any, name: str) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if number is None or not 0 < number <= MAX_ID:
        raise InvalidRequest(f"size must be a positive integer in sequencer store {name}, got {value!r}")
    return number


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

    def _validated(self, name: str, body: Any) -> tuple[_Entry, _Body]:
        request = _parse(body)
        if not self.components:
            raise ComponentNotConfigured(self.kind, name)
        if not request.key:
            raise InvalidRequest(f"Key is empty in sequencer store {name}")
        if SEPARATOR in request.key:
            raise InvalidRequest(f"input key/keyPrefix '{request.key}' can't contain '||'")
        return self.entry(name), request

    async def next_id(self, name: str, body: Any) -> int:
        """Decoded ``{"key", "options": {"increment": "WEAK"|"STRONG"}, "metadata"}``: the next id."""
        entry, request = self._validated(name, body)
        increment = _increment(request.increment)
        key = KEY_PREFIX + entry.prefixer.key(name, request.key)
        if increment is Increment.WEAK and entry.settings.segment_size:
            return await self.operation(Operation.SEQUENCER_NEXT_ID, name, request.key, self._weak, entry, key)
        next_request = NextIdRequest(key, increment, request.metadata)
        return await self.operation(
            Operation.SEQUENCER_NEXT_ID, name, request.key, entry.component.next_id, next_request
        )

    async def segment(self, name: str, body: Any) -> Segment:
        """Decoded ``{"key", "size", "metadata"}``: ``size`` consecutive ids reserved for the caller."""
        entry, request = self._validated(name, body)
        _increment(request.increment)
        segment_request = SegmentRequest(
            KEY_PREFIX + entry.prefixer.key(name, request.key), _size(request.size, name), request.metadata
        )
        return await self.operation(
            Operation.SEQUENCER_SEGMENT, name, request.key, entry.component.segment, segment_request
        )

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
