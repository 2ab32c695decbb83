"""The floor for any Python HTTP hop: a raw ASGI callable on uvicorn (httptools, uvloop), no framework,
doing the same Redis / SQLite calls as the sidecar's state scenarios (``perf.clients``).

Routes: ``GET /redis/{key}`` (``state.redis``'s read script on ``<redis-app-id>||key``), ``POST /redis``
(Dapr's save body ``[{"key","value"}]``, its write script per item), the same two under ``/sqlite``
(Dapr's SQLite table), ``GET /health``. ``python -m perf.baseline_app --port P --redis 127.0.0.1:6379 --redis-app-id ID
--sqlite PATH --sqlite-app-id ID``.
"""

from __future__ import annotations

import argparse

import orjson

from perf.asgi import Receive, Scope, Send, lifespan, read_body, respond, serve
from perf.clients import RedisState, SqliteStore, redis_client, state_key

__all__ = ("BaselineApp",)


class BaselineApp:
    def __init__(self, redis: str, redis_app_id: str, sqlite: str | None, sqlite_app_id: str) -> None:
        self._redis = RedisState(redis_client(redis))
        self._redis_app_id, self._sqlite_app_id = redis_app_id, sqlite_app_id
        self._sqlite_path = sqlite
        self._sqlite: SqliteStore | None = None

    async def _startup(self) -> None:
        if self._sqlite_path:
            self._sqlite = await SqliteStore(self._sqlite_path).open()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self._startup)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/redis/") and method == "GET":
            found = await self._redis.get(state_key(self._redis_app_id, path[7:]))
            if found is None:
                await respond(send, 204)
            else:
                await respond(send, 200, found.encode() if isinstance(found, str) else found)
        elif path == "/redis" and method == "POST":
            for item in orjson.loads(await read_body(receive)):
                await self._redis.save(state_key(self._redis_app_id, item["key"]), orjson.dumps(item["value"]))
            await respond(send, 204)
        elif path.startswith("/sqlite/") and method == "GET" and self._sqlite is not None:
            value = await self._sqlite.get(state_key(self._sqlite_app_id, path[8:]))
            if value is None:
                await respond(send, 204)
            else:
                await respond(send, 200, value)
        elif path == "/sqlite" and method == "POST" and self._sqlite is not None:
            for item in orjson.loads(await read_body(receive)):
                await self._sqlite.save(state_key(self._sqlite_app_id, item["key"]), orjson.dumps(item["value"]))
            await respond(send, 204)
        elif path == "/health":
            await respond(send, 200, b"{}")
        else:
            await respond(send, 404, b'{"error":"not found"}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", default="127.0.0.1:6379")
    parser.add_argument("--redis-app-id", default="perf-redis")
    parser.add_argument("--sqlite", help="the SQLite state file of the sidecar compared with")
    parser.add_argument("--sqlite-app-id", default="perf-default")
    args = parser.parse_args()
    serve(BaselineApp(args.redis, args.redis_app_id, args.sqlite, args.sqlite_app_id), args.port)


if __name__ == "__main__":
    main()
