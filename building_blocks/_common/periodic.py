"""Background housekeeping of components (deleting expired rows, renewing leases)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from building_blocks.errors import ComponentError

__all__ = ("every", "stop")

log = logging.getLogger(__name__)


def every(seconds: float, call: Callable[[], Awaitable[object]], name: str) -> asyncio.Task[None]:
    """Run ``call`` every ``seconds`` until stopped; a ``ComponentError`` is logged and the loop goes on."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await call()
            except ComponentError as exc:
                log.warning("%s: %s", name, exc)

    return asyncio.create_task(loop(), name=name)


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
