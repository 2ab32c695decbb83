"""State gets the protocol lane makes from its callbacks on Redis (``StateBlock.get_now``, ``call_now``): answered
byte for byte as the ASGI lane answers, counted in the same metrics, and ending as the general path ends
when the shortcut cannot finish (a script the server forgot, a connection killed, a reply that never comes)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from app.main import create_app
from app.middleware import FrontDoor
from app.settings import Settings
from building_blocks.state.block import StateBlock
from tests.components.test_pubsub_redis import private_redis  # noqa: F401  # the fixture
from tests.lane.wire import Answer, exchange, served
from tests.observability.test_metrics import value
from tests.sidecar import component_yaml


@dataclasses.dataclass
class Served:
    app: FrontDoor
    lane: int
    asgi: int
    redis: aioredis.Redis
    general: list[str]  # the keys ``StateBlock.get`` (the general path) was asked for

    async def get(self, port: int, key: str) -> Answer:
        (answer,) = await exchange(port, f"GET /v1.0/state/store/{key} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        return answer


@contextlib.asynccontextmanager
async def _served(tmp_path: Path, address: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    metadata = {"redisHost": address, "readTimeout": "0.5s", "redisMaxRetries": "1"}
    (tmp_path / "state.yaml").write_text(component_yaml("store", "state.redis", metadata))
    settings = Settings(app_id="nowapp", resources_paths=(tmp_path,), metrics_port=0)
    app = create_app(settings)
    general: list[str] = []
    get = StateBlock.get

    def spying(self: StateBlock, name: str, key: str, *args: Any) -> Awaitable[Any]:
        general.append(key)
        return get(self, name, key, *args)

    monkeypatch.setattr(StateBlock, "get", spying)
    host, _, port = address.partition(":")
    client = aioredis.Redis(host=host, port=int(port))
    async with app.lifespan():
        await app.runtime.wait_ready()
        asgi, lane = (dataclasses.replace(settings, http_lane=name) for name in ("asgi", "protocol"))
        async with served(app, asgi) as asgi_port, served(app, lane) as lane_port:
            try:
                yield Served(app, lane_port, asgi_port, client, general)
            finally:
                await client.aclose()


@pytest.fixture
async def side(tmp_path: Path, private_redis: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:  # noqa: F811
    async with _served(tmp_path, private_redis, monkeypatch) as found:
        await _save(found, "warm", '"up"')
        await found.get(found.lane, "warm")  # a pooled connection and the script on the server
        found.general.clear()
        yield found


async def _save(side: Served, key: str, value: str, metadata: str = "") -> None:
    body = f'[{{"key": "{key}", "value": {value}{metadata}}}]'.encode()
    head = f"POST /v1.0/state/store HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode()
    (answer,) = await exchange(side.lane, head + body)
    assert answer.status == 204, answer


async def test_answers_are_the_asgi_lanes_byte_for_byte(side: Served) -> None:
    await _save(side, "plain", '{"a": 1}')
    await _save(side, "ttl", '"soon"', ', "metadata": {"ttlInSeconds": "1000"}')
    await side.redis.set("nowapp||wrong-type", "a string, not the store's hash")  # the read script's error text
    await side.redis.hset("nowapp||text-etag", mapping={"data": '"x"', "version": "v-1"})  # another writer's
    for key in ("plain", "missing", "wrong-type", "ttl", "text-etag"):
        side.general.clear()
        lane, asgi = await side.get(side.lane, key), await side.get(side.asgi, key)
        assert side.general == [key], "the lane's get was made from callbacks; the ASGI lane's by StateBlock.get"
        if key == "ttl":  # its expiry is computed at each read: the same second, or the next
            assert lane.header(b"metadata.ttlexpiretime") is not None
            lane.headers = [h for h in lane.headers if h[0] != b"metadata.ttlexpiretime"]
            asgi.headers = [h for h in asgi.headers if h[0] != b"metadata.ttlexpiretime"]
        assert lane.wire() == asgi.wire()
    assert (await side.get(side.lane, "plain")).body == b'{"a":1}'
    assert (await side.get(side.lane, "text-etag")).header(b"etag") == b"v-1"
    assert (await side.get(side.lane, "wrong-type")).status == 500


async def test_metrics_count_the_calls_made_from_callbacks(side: Served) -> None:
    metrics = side.app.runtime.observability.metrics  # type: ignore[union-attr]
    assert metrics is not None
    await side.redis.set("nowapp||wrong-type", "x")
    before = metrics.exposition()
    for key in ("missing", "missing", "wrong-type"):
        await side.get(side.lane, key)
    assert side.general == []
    after = metrics.exposition()
    store = {"component": "store", "operation": "get"}

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("dapr_component_state_count", success="true", **store) == 2
    assert grew("dapr_component_state_count", success="false", **store) == 1
    assert grew("dapr_component_state_latencies_count", **store) == 3
    path = {"method": "GET", "path": "/v1.0/state/store"}
    assert grew("dapr_http_server_request_count", status="204", **path) == 2
    assert grew("dapr_http_server_request_count", status="500", **path) == 1


async def _falls_back(side: Served, break_it: Callable[[], Awaitable[Any]]) -> None:
    await _save(side, "kept", '"safe"')
    await break_it()
    side.general.clear()
    answer = await side.get(side.lane, "kept")
    assert (answer.status, answer.body) == (200, b'"safe"')
    assert side.general == ["kept"], "the general path made the call again"
    side.general.clear()
    assert (await side.get(side.lane, "kept")).body == b'"safe"'
    assert side.general == [], "and the next call is made from callbacks again"


async def test_a_script_the_server_forgot_is_loaded_by_the_general_path(side: Served) -> None:
    await _falls_back(side, side.redis.script_flush)


async def test_a_killed_connection_is_called_again_by_the_general_path(side: Served) -> None:
    await _falls_back(side, lambda: side.redis.client_kill_filter(_type="normal", skipme=True))


async def test_a_reply_that_never_comes_times_out_as_on_the_general_path(side: Served) -> None:
    answers = []
    for port in (side.lane, side.asgi):
        side.general.clear()
        await side.redis.client_pause(1000)  # no command of another connection runs for a second
        paused = asyncio.get_running_loop().time()
        answers.append(await side.get(port, "warm"))
        assert side.general == ([] if port == side.lane else ["warm"])
        await asyncio.sleep(paused + 1.1 - asyncio.get_running_loop().time())
        assert (await side.get(side.asgi, "warm")).body == b'"up"'  # the dropped connection made again
    lane, asgi = answers
    assert lane.status == 500 and b"readTimeout" in lane.body, lane
    assert lane.wire() == asgi.wire()
    side.general.clear()
    assert (await side.get(side.lane, "warm")).body == b'"up"'
    assert side.general == []
