"""A real HTTP app for tests: answers ``/dapr/subscribe`` and records every event the sidecar delivers.

Each route's answer is programmable: ``app.answers["/orders"] = [(500, b""), (200, b"")]`` answers the
first delivery with 500 and the following ones with 200 (the last answer repeats).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class SubscriberApp:
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    #: Per-path functions from the request body to (status, body); they win over ``answers``.
    responders: dict[str, Callable[[bytes], tuple[int, bytes]]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    port: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def at(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]

    async def wait_for(self, path: str, count: int, timeout: float = 15.0) -> list[Delivery]:
        """Wait until ``path`` got at least ``count`` deliveries; fail after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while len(self.at(path)) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.at(path)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if scope["method"] == "GET" and path == "/dapr/subscribe":
            status, answer = 200, orjson.dumps(self.subscriptions)
        else:
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            self.deliveries.append(Delivery(path, headers, body))
            self._arrived.set()
            if path in self.delay:
                await asyncio.sleep(self.delay[path])
            if path in self.responders:
                status, answer = self.responders[path](body)
            else:
                queue = self.answers.get(path) or [(200, b"")]
                status, answer = queue.pop(0) if len(queue) > 1 else queue[0]
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": answer})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(app: SubscriberApp) -> AsyncIterator[SubscriberApp]:
    """Serve ``app`` on a free loopback port for the duration of the block."""
    app.port = app.port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=app.port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield app
    finally:
        server.should_exit = True
        await task
