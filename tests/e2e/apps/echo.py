"""An app that answers service invocations, for the invocation tests (in-process or as a process).

Routes (any verb):
  /status/<code>          answers <code> with the verb as body
  /sink                   reads the body as it streams in: {"bytes": n, "sha256": ...}
  /source?bytes=N         streams N bytes (pattern of PATTERN) in 64 KiB chunks
  /slow?ms=N              answers 200 after N ms
  /flaky/<key>?fail=N&code=C   the first N calls per key answer C (503), then 200 "attempt <k>"
  /count/<key>            how many calls /flaky/<key> got
  /whoami                 {"instance": $INSTANCE}
  /relay/<app>/<method>   invokes <method> of <app> through this app's sidecar ($DAPR_HTTP_PORT), answers its answer
  /healthz, /health/up, /health/down    health probe path, and switches for it
  /headers-out            answers hop-by-hop, repeated and custom headers
  /redirect               307 to /echo
  anything else           echo: {"method","path","query","headers":[[k,v]...],"body"}

Environment when run as a process: APP_PORT (or PORT), INSTANCE, DAPR_HTTP_PORT.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import uvicorn

PATTERN = bytes(range(256)) * 256  # 64 KiB


class EchoApp:
    def __init__(self, instance: str = "") -> None:
        self.instance = instance
        self.healthy = True
        self.calls: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path: str = scope["path"]
        query = parse_qs(scope["query_string"].decode())
        if path == "/sink":
            await self._sink(receive, send)
            return
        if path == "/source":
            await self._source(int(query["bytes"][0]), send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, headers, answer = await self._answer(scope, path, query, body)
        if scope["method"] == "HEAD" or status in (204, 304):
            answer = b""
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def _answer(
        self, scope: dict[str, Any], path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        method = scope["method"]
        plain = [(b"content-type", b"text/plain")]
        json = [(b"content-type", b"application/json")]
        if path.startswith("/status/"):
            return int(path.rsplit("/", 1)[1]), plain, method.encode()
        if path == "/slow":
            await asyncio.sleep(int(query.get("ms", ["1000"])[0]) / 1000)
            return 200, plain, b"slow"
        if path.startswith("/flaky/"):
            key = path.rsplit("/", 1)[1]
            self.calls[key] += 1
            if self.calls[key] <= int(query.get("fail", ["1"])[0]):
                return int(query.get("code", ["503"])[0]), plain, b"failed"
            return 200, plain, f"attempt {self.calls[key]}".encode()
        if path.startswith("/count/"):
            return 200, plain, str(self.calls[path.rsplit("/", 1)[1]]).encode()
        if path == "/whoami":
            return 200, json, orjson.dumps({"instance": self.instance})
        if path.startswith("/relay/"):
            return await self._relay(scope, path, body)
        if path == "/healthz":
            return (200 if self.healthy else 503), plain, b""
        if path in ("/health/up", "/health/down"):
            self.healthy = path == "/health/up"
            return 200, plain, b""
        if path == "/headers-out":
            headers = [
                (b"x-method", method.encode()),
                (b"x-multi", b"a"),
                (b"x-multi", b"b"),
                (b"keep-alive", b"timeout=5"),
                (b"proxy-authenticate", b"Basic"),
                (b"set-cookie", b"a=1"),
            ]
            return 200, headers, b"headers"
        if path == "/redirect":
            return 307, [(b"location", b"/echo")], b"moved"
        record = {
            "method": method,
            "path": path,
            "query": scope["query_string"].decode(),
            "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
            "body": body.decode(errors="replace"),
        }
        self.requests.append(record)
        return 200, json, orjson.dumps(record)

    async def _sink(self, receive: Any, send: Any) -> None:
        digest = hashlib.sha256()
        count = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            count += len(chunk)
            digest.update(chunk)
            if not message.get("more_body"):
                break
        answer = orjson.dumps({"bytes": count, "sha256": digest.hexdigest()})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})

    async def _source(self, size: int, send: Any) -> None:
        headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        sent = 0
        while sent < size:
            chunk = PATTERN[: min(len(PATTERN), size - sent)]
            sent += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": sent < size})

    async def _relay(
        self, scope: dict[str, Any], path: str, body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        _, _, app, method = path.split("/", 3)
        port = os.environ["DAPR_HTTP_PORT"]
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.request(
                scope["method"], f"http://127.0.0.1:{port}/v1.0/invoke/{app}/method/{method}", content=body
            )
        headers = [(b"content-type", response.headers.get("content-type", "text/plain").encode())]
        return response.status_code, headers, response.content


def pattern_bytes(size: int) -> bytes:
    """What ``/source?bytes=size`` sends."""
    whole, rest = divmod(size, len(PATTERN))
    return PATTERN * whole + PATTERN[:rest]


if __name__ == "__main__":
    port = int(os.environ.get("APP_PORT") or os.environ["PORT"])
    uvicorn.run(EchoApp(os.environ.get("INSTANCE", "")), host="127.0.0.1", port=port, log_level="warning")
