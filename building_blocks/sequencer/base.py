"""The Sequencer block's contract (Layotto's API): requests, segments and the ``Sequencer`` base class.

Ids are positive int64, unique per key across every sidecar sharing the backend and across restarts.
``STRONG`` ids come straight from the backend, so every caller sees them strictly increase (on a counter
backend, across all sidecars). ``WEAK`` ids may be served by the block from a segment the sidecar reserved
in the backend: unique, increasing per sidecar. Keys reaching a component are already prefixed
(``sequencer|||<prefix>||<key>``, Layotto's layout).

``floors`` (``biggerThan.<key>`` metadata, set by the block with stored keys before ``init``): every id of
such a key is bigger than its floor; a component raises its counter to the floor at ``init`` or fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar

from building_blocks.component import Component
from building_blocks.errors import ComponentError

__all__ = (
    "MAX_ID",
    "CounterSequencer",
    "Increment",
    "NextIdRequest",
    "Segment",
    "SegmentRequest",
    "Sequencer",
)

MAX_ID = 2**63 - 1
_NO_FLOORS: Mapping[str, int] = MappingProxyType({})


class Increment(StrEnum):
    WEAK = "WEAK"
    STRONG = "STRONG"


@dataclass(frozen=True, slots=True)
class NextIdRequest:
    key: str
    increment: Increment = Increment.WEAK
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SegmentRequest:
    """Reserve ``size`` consecutive ids of ``key``."""

    key: str
    size: int
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Segment:
    """The ids ``first`` to ``last``, both included."""

    first: int
    last: int


class Sequencer(Component):
    """Base class of sequencers. Backend failures raise ``ComponentError``."""

    #: Whether WEAK ids are worth serving from a prefetched segment (each id costs a backend round trip).
    segment_cache: ClassVar[bool] = True
    #: Floors by stored key; set by the block before ``init``.
    floors: Mapping[str, int] = _NO_FLOORS

    async def next_id(self, request: NextIdRequest) -> int:
        raise NotImplementedError

    async def segment(self, request: SegmentRequest) -> Segment:
        raise NotImplementedError


class CounterSequencer(Sequencer):
    """A sequencer keeping one counter per key (the last id given); subclasses implement the two primitives.

    ``init`` of a subclass connects, then awaits ``apply_floors()``.
    """

    async def add(self, key: str, amount: int) -> int:
        """Atomically add ``amount`` to the counter of ``key`` (0 when new); the new value."""
        raise NotImplementedError

    async def raise_to(self, key: str, floor: int) -> None:
        """Atomically set the counter of ``key`` to ``floor`` if it is lower."""
        raise NotImplementedError

    async def apply_floors(self) -> None:
        for key, floor in self.floors.items():
            await self.raise_to(key, floor)

    async def next_id(self, request: NextIdRequest) -> int:
        return await self.add(request.key, 1)

    async def segment(self, request: SegmentRequest) -> Segment:
        last = await self.add(request.key, request.size)
        return Segment(last - request.size + 1, last)


def exhausted(key: str) -> ComponentError:
    return ComponentError(f"the sequence of {key} is exhausted (ids are int64)")
