"""App health checks (``--enable-app-health-check``): probe the app, and tell who cares when it changes.

Every ``interval`` the sidecar sends ``GET <path>`` to the app (``timeout`` each); a 2xx answer is a
success, anything else (or no answer) a failure. The app is unhealthy from the start until a probe
succeeds, and again after ``threshold`` consecutive failures. While unhealthy, invocations of the app fail
with ``app is not in a healthy state`` and the runtime pauses the pub/sub subscriptions (``on_change``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from app.app_channel import AppChannel
from app.http_client import HttpClientError

__all__ = ("AppHealth",)

log = logging.getLogger("layotto.app_health")


class AppHealth:
    def __init__(self, channel: AppChannel, path: str, interval: float, timeout: float, threshold: int) -> None:
        self.channel = channel
        self.path = "/" + path.lstrip("/")
        self.interval = interval
        self.timeout = timeout
        self.threshold = max(1, threshold)
        self.healthy = False
        self.failures = 0
        #: Called with the new state on every change (healthy / unhealthy).
        self.listeners: list[Callable[[bool], Awaitable[None]]] = []
        self._healthy_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="app-health")

    async def wait_healthy(self) -> None:
        await self._healthy_event.wait()

    async def probe(self) -> str:
        """One probe: "" when healthy, else the reason."""
        try:
            response = await self.channel.request("GET", self.path, timeout=self.timeout, probe=True)
        except HttpClientError as exc:
            return f"Network error: {str(exc) or type(exc).__name__}"
        if 200 <= response.status_code < 300:
            return ""
        return f"Health check failed with status code: {response.status_code}"

    async def _run(self) -> None:
        while True:
            await self.report(await self.probe())
            await asyncio.sleep(self.interval)

    async def report(self, problem: str) -> None:
        """Account for one probe's outcome; notifies the listeners on a change."""
        if not problem:
            self.failures = 0
            if not self.healthy:
                log.info("App entered healthy status")
                await self._set(True)
            return
        self.failures += 1
        if self.healthy and self.failures >= self.threshold:
            log.warning("App entered un-healthy status: %s", problem)
            await self._set(False)

    async def _set(self, healthy: bool) -> None:
        self.healthy = healthy
        if healthy:
            self._healthy_event.set()
        else:
            self._healthy_event.clear()
        for listener in self.listeners:
            try:
                await listener(healthy)
            except Exception:
                log.exception("app health listener failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
