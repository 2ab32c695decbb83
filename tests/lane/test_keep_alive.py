"""The keep-alive timer (``BoundedHeadProtocol``, both lanes): armed once per idle spell, it closes a connection
idle for the whole timeout, and never one that keeps sending requests, however long it lives."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.lane.conftest import Pair
from tests.lane.wire import connect, request, served

_TIMEOUT = 1


@pytest.mark.parametrize("lane", ["protocol", "asgi"])
async def test_an_idle_connection_is_closed_and_a_busy_one_is_not(pair: Pair, lane: str) -> None:
    settings = dataclasses.replace(pair.app.runtime.settings, http_lane=lane)
    get = request("GET", "/v1.0/healthz")
    async with served(pair.app, settings, keep_alive=_TIMEOUT) as port, connect(port) as busy, connect(port) as idle:
        loop = asyncio.get_running_loop()
        await idle.send(get)
        await idle.answers(1)
        went_idle = loop.time()
        started = loop.time()
        count = 0
        while loop.time() - started < 2.5 * _TIMEOUT:  # requests 0.1 s apart for longer than the timeout
            count += 1
            await busy.send(get)
            assert len(await busy.answers(count)) == count and not busy.closed
            await asyncio.sleep(0.1)
        await idle.until_closed()
        assert loop.time() - went_idle >= _TIMEOUT
        count += 1
        await busy.send(get)  # still open
        assert len(await busy.answers(count)) == count


async def test_pipelined_requests_then_idle(pair: Pair) -> None:
    settings = dataclasses.replace(pair.app.runtime.settings, http_lane="protocol")
    get = request("GET", "/v1.0/healthz")
    state = request("GET", "/v1.0/state/statestore/k", headers=[("dapr-api-token", "s3cret-token")])
    async with served(pair.app, settings, keep_alive=_TIMEOUT) as port, connect(port) as connection:
        await connection.send(get + state + get)
        answers = await connection.until_closed()
        assert [answer.status for answer in answers] == [204, 204, 204]
