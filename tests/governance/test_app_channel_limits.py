"""Calls into the app, against a real sidecar process: ``--app-max-concurrency N`` lets at most N in at once
(the others wait, none is refused), and ``APP_API_TOKEN`` reaches the app as ``dapr-api-token`` on every call
(``/dapr/subscribe``, deliveries, invocations, health probes)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy
from tests.sidecar import component_yaml

WAIT = 60.0


class App:
    """Records each call's path and token, and the most ``/slow`` calls (0.3 s each) it held at once."""

    #: Seconds a ``/slow`` call takes.
    SLOW = 0.3

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.in_flight = 0
        self.most = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        while (await receive()).get("more_body"):
            pass
        headers = dict(scope["headers"])
        self.calls.append((scope["path"], headers.get(b"dapr-api-token", b"").decode()))
        body = b"[]"
        if scope["path"] == "/dapr/subscribe":
            body = orjson.dumps([{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}])
        if scope["path"] == "/slow":  # health probes take no slot: only invocations are counted
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            try:
                await asyncio.sleep(self.SLOW)
            finally:
                self.in_flight -= 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    def paths(self, path: str) -> list[str]:
        return [token for called, token in self.calls if called == path]


@contextlib.asynccontextmanager
async def serving(app: App) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


def _resources(tmp_path: Path) -> Path:
    folder = tmp_path / "resources"
    folder.mkdir()
    (folder / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.in-memory"))
    (folder / "config.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: config}\nspec:\n"
        f"  nameResolution:\n    component: sqlite\n    configuration: {{connectionString: '{tmp_path / 'nr.db'}'}}\n"
    )
    return folder


async def _until(condition: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.02)


async def test_at_most_n_calls_in_the_app_and_the_token_on_every_call(tmp_path: Path) -> None:
    app = App()
    async with serving(app) as app_port:
        port = free_port()
        sidecar = layotto(
            "--app-id", "limited", "--app-port", str(app_port), "--dapr-http-port", str(port),
            "--app-max-concurrency", "2", "--enable-app-health-check", "--app-health-check-path", "/health",
            "--app-health-probe-interval", "1", "--resources-path", str(_resources(tmp_path)), "--log-level", "warning",
            env={"APP_API_TOKEN": "app-secret"},
        )  # fmt: skip
        try:
            await asyncio.to_thread(wait_healthy, port, WAIT, sidecar)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as client:
                answers = await asyncio.gather(
                    *(client.post("/v1.0/invoke/limited/method/slow", content=b"x") for _ in range(6))
                )
                assert [answer.status_code for answer in answers] == [200] * 6
                assert app.most == 2  # never more, and the limit was reached: the calls waited their turn
                published = await client.post("/v1.0/publish/pubsub/orders", json={"id": 1})
                assert published.status_code == 204
                await _until(lambda: app.paths("/orders"), "a delivery")
                await _until(lambda: app.paths("/health"), "a health probe")
        finally:
            code, stderr = await asyncio.to_thread(stop, sidecar)
        assert code == 0, stderr
    for path in ("/dapr/subscribe", "/slow", "/orders", "/health"):
        assert app.paths(path) and set(app.paths(path)) == {"app-secret"}, (path, app.calls)


async def test_without_a_limit_calls_are_not_queued(tmp_path: Path) -> None:
    app = App()
    async with serving(app) as app_port:
        port = free_port()
        sidecar = layotto(
            "--app-id", "unlimited", "--app-port", str(app_port), "--dapr-http-port", str(port),
            "--resources-path", str(_resources(tmp_path)), "--log-level", "warning",
        )  # fmt: skip
        try:
            await asyncio.to_thread(wait_healthy, port, WAIT, sidecar)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as client:
                answers = await asyncio.gather(
                    *(client.post("/v1.0/invoke/unlimited/method/slow", content=b"x") for _ in range(4))
                )
                assert [answer.status_code for answer in answers] == [200] * 4
                assert app.most >= 3  # 4 calls of 0.3 s each, sent together, overlap without a limit
        finally:
            code, stderr = await asyncio.to_thread(stop, sidecar)
        assert code == 0, stderr
    assert set(app.paths("/slow")) == {""}  # no APP_API_TOKEN: no token
