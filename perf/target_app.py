"""The app behind the sidecars: an echo method for service invocation, and a subscriber that records when
each event arrived (for the end-to-end publish -> delivered latency). Raw ASGI on uvicorn (httptools, uvloop).

* ``POST /echo``: answers 200 with the request's body.
* ``GET /dapr/subscribe``: the ``--subscribe PUBSUB=TOPIC`` subscriptions, all routed to ``/events``.
* ``POST /events``: a CloudEvent whose ``data`` is ``{"r": run, "i": index, "t": scheduled ns, ...}``; records
  ``(i, t, received ns)`` under run ``r`` (``time.monotonic_ns``: CLOCK_MONOTONIC, the same clock in every
  process of the machine) and answers ``SUCCESS``.
* ``GET /received/{run}``: ``[[i, t, received], ...]`` of that run. ``GET /health``: 200.
"""

from __future__ import annotations

import argparse
import time

import orjson

from perf.asgi import Receive, Scope, Send, lifespan, read_body, respond, serve

__all__ = ("TargetApp",)

_SUCCESS = b'{"status":"SUCCESS"}'


class TargetApp:
    def __init__(self, subscriptions: list[tuple[str, str]]) -> None:
        self._subscriptions = orjson.dumps(
            [{"pubsubname": pubsub, "topic": topic, "route": "/events"} for pubsub, topic in subscriptions]
        )
        self._received: dict[str, list[tuple[int, int, int]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, _nothing)
            return
        path: str = scope["path"]
        if path == "/echo":
            body = await read_body(receive)
            content_type = dict(scope["headers"]).get(b"content-type", b"application/octet-stream")
            await respond(send, 200, body, [(b"content-type", content_type)])
        elif path == "/events":
            body = await read_body(receive)
            received = time.monotonic_ns()
            data = orjson.loads(body).get("data")
            if isinstance(data, dict) and "r" in data:
                self._received.setdefault(str(data["r"]), []).append((data["i"], data["t"], received))
            await respond(send, 200, _SUCCESS)
        elif path == "/dapr/subscribe":
            await respond(send, 200, self._subscriptions)
        elif path.startswith("/received/"):
            await respond(send, 200, orjson.dumps(self._received.get(path[10:], [])))
        elif path == "/health":
            await respond(send, 200, b"{}")
        else:
            await respond(send, 404, b'{"error":"not found"}')


async def _nothing() -> None:
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--subscribe", action="append", default=[], metavar="PUBSUB=TOPIC")
    args = parser.parse_args()
    serve(TargetApp([tuple(item.split("=", 1)) for item in args.subscribe]), args.port)


if __name__ == "__main__":
    main()
