"""A backend that accepts connections but never answers: every Redis and PostgreSQL component fails the call
after its configured timeout (not several of them), with a Dapr error whose message says what timed out,
and the sidecar stays healthy and recovers when the backend answers again."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from building_blocks._common.redis import execute, pool_options, redis_client, translated
from building_blocks.component import Metadata
from building_blocks.errors import ComponentError
from tests.services import require_postgres, require_redis
from tests.sidecar import Sidecar, component_yaml, running_sidecar

TIMEOUT = 1.0  # the configured timeout; every call below must fail after about this long
# A call that retried a timed-out command (redisMaxRetries is 3 by default) would take 4 timeouts.
AT_MOST = 3.5


class FreezableProxy:
    """A TCP proxy to a real backend. ``freeze()`` makes it a backend that never answers: connections (old and
    new) are accepted and read, and nothing is forwarded either way. ``stall()`` stops reading altogether, so
    the sender's socket buffers fill up."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = False
        self._reading = asyncio.Event()
        self._reading.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> FreezableProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def freeze(self) -> None:
        self.frozen = True

    def stall(self) -> None:
        self._reading.clear()

    def thaw(self) -> None:
        self.frozen = False
        self._reading.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            if self.frozen:
                while await reader.read(65536):
                    pass
                return
            upstream_reader, upstream = await asyncio.open_connection(*self.target)
            await asyncio.gather(self._pump(reader, upstream), self._pump(upstream_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            for stream in (writer, upstream):
                if stream is not None:
                    stream.close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while await self._reading.wait() and (data := await source.read(65536)):
            if not self.frozen:  # frozen: swallowed, as by a backend that hangs
                sink.write(data)


@dataclass(frozen=True)
class Case:
    component_type: str
    method: str
    path: str
    body: Any
    error_code: str


CASES = {
    "state": Case("state", "GET", "/v1.0/state/{name}/k", None, "ERR_STATE_GET"),
    "lock": Case(
        "lock",
        "POST",
        "/v1.0-alpha1/lock/{name}",
        {"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 9},
        "ERR_TRY_LOCK",
    ),
    "sequencer": Case("sequencer", "POST", "/v1.0-alpha1/sequencer/{name}", {"key": "k"}, "ERR_SEQUENCER_GET_NEXT_ID"),
    "configuration": Case("configuration", "GET", "/v1.0/configuration/{name}?key=k", None, "ERR_CONFIGURATION_GET"),
    "pubsub": Case("pubsub", "POST", "/v1.0/publish/{name}/orders", {"n": 1}, "ERR_PUBSUB_PUBLISH_MESSAGE"),
}


def redis_metadata(port: int, **extra: str) -> dict[str, str]:
    return {"redisHost": f"127.0.0.1:{port}", "readTimeout": f"{TIMEOUT:g}s", **extra}


def postgres_metadata(port: int, **extra: str) -> dict[str, str]:
    fields = dict(part.split("=", 1) for part in require_postgres().split())
    fields.update(host="127.0.0.1", port=str(port))
    table = f"t_{uuid.uuid4().hex[:12]}"
    connection = " ".join(f"{k}={v}" for k, v in fields.items())
    timeout = f"{TIMEOUT:g}"  # Dapr's older name, in bare seconds
    return {"connectionString": connection, "timeoutInSeconds": timeout, "tableName": table, "table": table, **extra}


@contextlib.asynccontextmanager
async def sidecar_through(
    tmp_path: Path, component_type: str, metadata: dict[str, str]
) -> AsyncIterator[tuple[Sidecar, str]]:
    name = f"c{uuid.uuid4().hex[:8]}"
    (tmp_path / "component.yaml").write_text(component_yaml(name, component_type, metadata))
    async with running_sidecar(tmp_path) as sidecar:
        yield sidecar, name


async def call(sidecar: Sidecar, case: Case, name: str) -> tuple[Any, float]:
    started = time.monotonic()
    response = await sidecar.client.request(case.method, case.path.format(name=name), json=case.body)
    return response, time.monotonic() - started


async def assert_times_out(sidecar: Sidecar, case: Case, name: str, says: str) -> None:
    response, elapsed = await call(sidecar, case, name)
    assert response.status_code == 500, response.text
    body = response.json()
    assert body.get("errorCode", case.error_code) == case.error_code, body
    assert says in response.text, response.text
    assert TIMEOUT * 0.9 <= elapsed < AT_MOST, elapsed
    assert (await sidecar.client.get("/v1.0/healthz")).status_code == 204


@pytest.mark.parametrize("block", CASES)
async def test_redis_components_fail_after_read_timeout(tmp_path: Path, block: str) -> None:
    host, _, port = require_redis().partition(":")
    case = CASES[block]
    async with (
        FreezableProxy(host, int(port)) as proxy,
        sidecar_through(tmp_path, f"{case.component_type}.redis", redis_metadata(proxy.port)) as (sidecar, name),
    ):
        proxy.freeze()
        says = f"timed out after {TIMEOUT:g}s waiting for a reply from Redis at 127.0.0.1:{proxy.port} (readTimeout)"
        await assert_times_out(sidecar, case, name, says)
        proxy.thaw()
        response, _ = await call(sidecar, case, name)
        assert response.status_code < 300, response.text


@pytest.mark.parametrize("block", ["state", "lock", "sequencer", "configuration"])
async def test_postgresql_components_fail_after_timeout(tmp_path: Path, block: str) -> None:
    fields = dict(part.split("=", 1) for part in require_postgres().split())
    case = CASES[block]
    component_type = f"{case.component_type}.postgresql"
    async with (
        FreezableProxy(fields.get("host", "127.0.0.1"), int(fields.get("port", 5432))) as proxy,
        sidecar_through(tmp_path, component_type, postgres_metadata(proxy.port)) as (sidecar, name),
    ):
        proxy.freeze()
        says = f"timed out after {TIMEOUT:g}s waiting for PostgreSQL at 127.0.0.1:{proxy.port} (timeout)"
        await assert_times_out(sidecar, case, name, says)
        proxy.thaw()
        for _ in range(3):  # the pool may hand out the connection broken by the timeout once more
            response, _ = await call(sidecar, case, name)
            if response.status_code < 300:
                break
        assert response.status_code < 300, response.text


async def test_redis_pool_exhaustion_names_pool_timeout(tmp_path: Path) -> None:
    host, _, port = require_redis().partition(":")
    case = CASES["state"]
    metadata = redis_metadata(0, poolSize="1", poolTimeout="0.3s", readTimeout="2s")
    async with FreezableProxy(host, int(port)) as proxy:
        metadata["redisHost"] = f"127.0.0.1:{proxy.port}"
        async with sidecar_through(tmp_path, "state.redis", metadata) as (sidecar, name):
            proxy.freeze()
            first = asyncio.create_task(call(sidecar, case, name))
            await asyncio.sleep(0.05)  # the first call holds the only connection, waiting for a reply
            response, elapsed = await call(sidecar, case, name)
            assert response.status_code == 500
            assert "timed out after 0.3s waiting for one of the 1 connections to Redis" in response.text
            assert "(poolTimeout)" in response.text
            response, elapsed = await first
            assert "(readTimeout)" in response.text and elapsed >= 1.8


async def test_redis_write_timeout_bounds_a_write_the_backend_does_not_read() -> None:
    """A backend that stops reading fills the socket buffers: the write waits at most ``writeTimeout``,
    not ``readTimeout``."""
    host, _, port = require_redis().partition(":")
    async with FreezableProxy(host, int(port)) as proxy:
        metadata = redis_metadata(proxy.port, writeTimeout="0.5s", readTimeout="60s")
        client = redis_client(pool_options(Metadata(metadata)))
        try:
            await execute(client, "PING")  # connected through the proxy
            proxy.stall()
            started = time.monotonic()
            expected = r"timed out after 0.5s sending a command to Redis at .*writeTimeout"
            with pytest.raises(ComponentError, match=expected), translated():
                await execute(client, "SET", "k", b"x" * (64 << 20))  # far more than the socket buffers hold
            assert time.monotonic() - started < 30  # not readTimeout's 60s
        finally:
            proxy.thaw()
            await client.aclose()
