"""``sequencer.in-memory``: one counter per key in this process; ids start at 1 and are lost on restart.

Metadata: block-level only (``keyPrefix``, ``biggerThan.<key>``). WEAK ids are never cached: every id is
already a dict update.
"""

from __future__ import annotations

from typing import ClassVar

from building_blocks._common.metadata import SEQUENCER, NoMetadata, parse
from building_blocks.component import ComponentContext, Metadata
from building_blocks.sequencer.base import MAX_ID, CounterSequencer, exhausted

__all__ = ("InMemorySequencer",)


class InMemorySequencer(CounterSequencer):
    segment_cache: ClassVar[bool] = False

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        parse(NoMetadata, metadata, SEQUENCER)

    async def init(self) -> None:
        self._counters: dict[str, int] = {}
        await self.apply_floors()

    async def add(self, key: str, amount: int) -> int:
        value = self._counters.get(key, 0) + amount
        if value > MAX_ID:
            raise exhausted(key)
        self._counters[key] = value
        return value

    async def raise_to(self, key: str, floor: int) -> None:
        self._counters[key] = max(self._counters.get(key, 0), floor)
