"""The channel into the local app (``--app-port``): for now, knowing when the app listens.

Dapr reports itself healthy only once the app's port accepts connections; ``wait_until_listening``
polls it, without busy-looping, until it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

__all__ = ("AppChannel",)

log = logging.getLogger("layotto.app_channel")
POLL_INTERVAL = 0.05


class AppChannel:
    """The local app at ``address:port``."""

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self.listening = False

    async def wait_until_listening(self) -> None:
        while True:
            try:
                _, writer = await asyncio.open_connection(self.address, self.port)
            except OSError:
                await asyncio.sleep(POLL_INTERVAL)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self.listening = True
            log.info("app is listening on %s:%d", self.address, self.port)
            return
