"""Sequencer building block: the contract; components live in their own modules."""

from building_blocks.sequencer.base import (
    CounterSequencer,
    Increment,
    NextIdRequest,
    Segment,
    SegmentRequest,
    Sequencer,
)

__all__ = ("CounterSequencer", "Increment", "NextIdRequest", "Segment", "SegmentRequest", "Sequencer")
