"""The protocol lane on a real socket: which requests it serves, that its answers are the ASGI lane's byte for
byte, and its framing under hostile input (split heads, pipelining across both lanes, bad chunk sizes, early
close, slow senders, oversized heads and bodies)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.lane.api import ApiLane
from app.lane.cycle import LaneCycle
from app.main import create_app
from app.settings import Settings
from tests.lane.conftest import TOKEN, Pair
from tests.lane.wire import connect, exchange, request, served
from tests.sidecar import component_yaml

AUTH = [("dapr-api-token", TOKEN)]
SAVE = request("POST", "/v1.0/state/statestore", b'[{"key":"k","value":{"n":1}}]', AUTH)


# -- same wire, and actually the lane ------------------------------------------------------------------------

CASES = [
    SAVE,
    request("GET", "/v1.0/state/statestore/k", headers=AUTH),
    request("GET", "/v1.0/state/statestore/missing", headers=AUTH),
    request("GET", "/v1.0/state/nostore/k", headers=AUTH),
    request("GET", "//v1.0//state/statestore/k/", headers=AUTH),
    request("GET", "/v1.0/state/statestore/k?consistency=strong&metadata.x=1", headers=AUTH),
    request("POST", "/v1.0/state/statestore", b"[{}]", AUTH),
    request("POST", "/v1.0/state/statestore", b"not json", AUTH),
    request("POST", "/v1.0/publish/pubsub/orders", b'{"a":1}', [*AUTH, ("content-type", "application/json")]),
    request("POST", "/v1.0/publish/nopubsub/orders", b"{}", AUTH),
    request("GET", "/v1.0/invoke/nobody/method/x", headers=AUTH),
    request("POST", "/x/y", b"hi", AUTH),
    request("GET", "/v1.0/state/statestore/k"),  # no token: the door's 401
    request("GET", "/v1.0/state/statestore/%zz", headers=AUTH),  # a bad escape: the door's 400
    request("POST", "/v1.0/state/statestore", b"x" * 5000, AUTH),  # over --max-body-size: the door's 413
    request("GET", "/v1.0/state/statestore/k", headers=[*AUTH, ("connection", "close")]),
    request("HEAD", "/v1.0/state/statestore/k", headers=AUTH),
    request("GET", "/v1.0/metadata", headers=AUTH),
    # smuggling attempts: the parser's 400 on both lanes, never a claim
    request(
        "POST",
        "/v1.0/state/statestore",
        b"0\r\n\r\n",
        [*AUTH, ("content-length", "5"), ("transfer-encoding", "chunked")],
    ),
    request("POST", "/v1.0/state/statestore", b"[]", [*AUTH, ("content-length", "2"), ("content-length", "3")]),
    request("GET", "/v1.0/state/statestore/k", headers=[*AUTH, ("content-length", "-1")]),
]


@pytest.mark.parametrize("data", CASES, ids=[case.split(b"\r\n")[0].decode() for case in CASES])
async def test_answers_are_the_asgi_lanes_byte_for_byte(pair: Pair, data: bytes) -> None:
    await exchange(pair.asgi_port, SAVE)
    lane = await exchange(pair.lane_port, data)
    asgi = await exchange(pair.asgi_port, data)
    assert [answer.wire() for answer in lane] == [answer.wire() for answer in asgi]


async def test_hot_routes_are_claimed_and_the_rest_is_not(pair: Pair) -> None:
    await exchange(pair.lane_port, SAVE)
    await exchange(pair.lane_port, request("GET", "/v1.0/state/statestore/k", headers=AUTH))
    await exchange(pair.lane_port, request("POST", "/v1.0/publish/pubsub/t", b"{}", AUTH))
    await exchange(pair.lane_port, request("GET", "/v1.0/invoke/nobody/method/m", headers=AUTH))
    assert pair.claimed == [
        "/v1.0/state/statestore",
        "/v1.0/state/statestore/k",
        "/v1.0/publish/pubsub/t",
        "/v1.0/invoke/nobody/method/m",
    ]
    pair.claimed.clear()
    for data in CASES[-9:-3]:  # the door's refusals (answered by the lane), then metadata (the ASGI app's)
        await exchange(pair.lane_port, data)
    assert pair.claimed == [
        "/v1.0/state/statestore/k",  # no token: 401
        "/v1.0/state/statestore/%zz",  # 400
        "/v1.0/state/statestore",  # 413
        "/v1.0/state/statestore/k",  # connection: close
        "/v1.0/state/statestore/k",  # HEAD (a GET route)
    ]


async def test_the_token_is_not_passed_on_and_metrics_are_counted(pair: Pair) -> None:
    await exchange(pair.lane_port, SAVE)
    (answer,) = await exchange(pair.lane_port, request("GET", "/v1.0/state/statestore/k", headers=AUTH))
    assert answer.status == 200 and answer.body == b'{"n":1}'
    observability = pair.app.runtime.observability
    assert observability is not None and observability.metrics is not None
    exposition = observability.metrics.exposition()
    assert 'method="GET",path="/v1.0/state/statestore",status="200"} 1.0' in exposition or (
        'method="GET",path="/v1.0/state/statestore",status="200"} 1' in exposition
    )
    assert 'method="POST",path="/v1.0/state/statestore",status="204"} 1' in exposition


# -- framing -----------------------------------------------------------------------------------------------------


async def test_a_head_split_byte_by_byte(pair: Pair) -> None:
    data = request("GET", "/v1.0/state/statestore/k", headers=AUTH)
    await exchange(pair.lane_port, SAVE)
    async with connect(pair.lane_port) as connection:
        for index in range(len(data)):
            await connection.send(data[index : index + 1])
        (answer,) = await connection.answers(1)
    assert answer.status == 200 and answer.body == b'{"n":1}'


async def test_pipelined_requests_across_both_lanes_are_answered_in_order(pair: Pair) -> None:
    get = request("GET", "/v1.0/state/statestore/k", headers=AUTH)
    metadata = request("GET", "/v1.0/metadata", headers=AUTH)
    save2 = request("POST", "/v1.0/state/statestore", b'[{"key":"k","value":2}]', AUTH)
    answers = await exchange(pair.lane_port, SAVE + get + metadata + save2 + get + metadata, 6)
    assert [a.status for a in answers] == [204, 200, 200, 204, 200, 200]
    assert answers[1].body == b'{"n":1}' and answers[4].body == b"2"
    assert b'"id":"laneapp"' in answers[2].body and b'"id":"laneapp"' in answers[5].body


async def test_a_body_sent_slowly_in_pieces(pair: Pair) -> None:
    body = b'[{"key":"slow","value":"' + b"v" * 300 + b'"}]'
    data = request("POST", "/v1.0/state/statestore", body, AUTH)
    head, _, rest = data.partition(b"\r\n\r\n")
    async with connect(pair.lane_port) as connection:
        await connection.send(head + b"\r\n\r\n")
        for start in range(0, len(rest), 37):
            await asyncio.sleep(0.01)
            await connection.send(rest[start : start + 37])
        (answer,) = await connection.answers(1)
    assert answer.status == 204
    (got,) = await exchange(pair.lane_port, request("GET", "/v1.0/state/statestore/slow", headers=AUTH))
    assert got.body == b'"' + b"v" * 300 + b'"'


@pytest.mark.parametrize("size", [b"zz", b"-1", b"fffffffffffffffffff"])
async def test_bad_chunk_sizes_are_400_and_close(pair: Pair, size: bytes) -> None:
    head = request("POST", "/v1.0/state/statestore", headers=[*AUTH, ("transfer-encoding", "chunked")])
    async with connect(pair.lane_port) as connection:
        await connection.send(head + size + b"\r\nabc\r\n0\r\n\r\n")
        answers = await connection.until_closed()
    assert [a.status for a in answers] == [400]


async def test_a_chunked_save_is_served(pair: Pair) -> None:
    body = b'[{"key":"ch","value":3}]'
    head = request("POST", "/v1.0/state/statestore", headers=[*AUTH, ("transfer-encoding", "chunked")])
    chunks = b"".join(b"%x\r\n%b\r\n" % (len(body[i : i + 5]), body[i : i + 5]) for i in range(0, len(body), 5))
    (answer,) = await exchange(pair.lane_port, head + chunks + b"0\r\n\r\n")
    assert answer.status == 204


async def test_expect_100_continue(pair: Pair) -> None:
    body = b'[{"key":"e","value":4}]'
    data = request("POST", "/v1.0/state/statestore", body, [*AUTH, ("expect", "100-continue")])
    head, _, rest = data.partition(b"\r\n\r\n")
    async with connect(pair.lane_port) as connection:
        await connection.send(head + b"\r\n\r\n")
        async with asyncio.timeout(30):
            while b"100 Continue" not in connection.raw:
                await connection._read()
        await connection.send(rest)
        (answer,) = await connection.answers(1)
    assert answer.status == 204


async def test_an_early_close_mid_body_leaves_the_server_serving(pair: Pair) -> None:
    data = request("POST", "/v1.0/state/statestore", b'[{"key":"gone","value":1}]', AUTH)
    async with connect(pair.lane_port) as connection:
        await connection.send(data[:-10])
    async with connect(pair.lane_port) as connection:
        await connection.send(data[:-10])
        connection.writer.transport.abort()
    (answer,) = await exchange(pair.lane_port, request("GET", "/v1.0/state/statestore/gone", headers=AUTH))
    assert answer.status == 204  # never saved


async def test_an_oversized_head_is_431_and_closed(pair: Pair) -> None:
    data = request("GET", "/v1.0/state/statestore/k", headers=[*AUTH, ("x-big", "y" * 9000)])
    async with connect(pair.lane_port) as connection:
        await connection.send(data)
        answers = await connection.until_closed()
    assert [a.status for a in answers] == [431]


async def test_connection_close_is_honoured(pair: Pair) -> None:
    await exchange(pair.lane_port, SAVE)
    data = request("GET", "/v1.0/state/statestore/k", headers=[*AUTH, ("connection", "close")])
    async with connect(pair.lane_port) as connection:
        await connection.send(data)
        answers = await connection.until_closed()
    assert [a.status for a in answers] == [200]
    assert answers[0].header(b"connection") == b"close"


async def test_garbage_is_400(pair: Pair) -> None:
    async with connect(pair.lane_port) as connection:
        await connection.send(b"GET /v1.0/state/statestore/k HTTP/1.1\r\nhost sidecar\r\n\r\n")
        answers = await connection.until_closed()
    assert [a.status for a in answers] == [400]


async def test_nothing_is_claimed_while_error_codes_are_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = tmp_path / "resources"
    resources.mkdir()
    (resources / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec: {metrics: {recordErrorCodes: true}}\n"
    )
    settings = Settings(
        app_id="codes", resources_paths=(resources,), config_file=config, http_lane="protocol", metrics_port=0
    )
    claimed: list[LaneCycle | None] = []
    claim = ApiLane.claim

    def spying(self: ApiLane, *args: object) -> LaneCycle | None:
        claimed.append(claim(self, *args))  # type: ignore[arg-type]
        return claimed[-1]

    monkeypatch.setattr(ApiLane, "claim", spying)
    app = create_app(settings)
    async with app.lifespan():
        await app.runtime.wait_ready()
        async with served(app, settings) as port:
            (answer,) = await exchange(port, request("GET", "/v1.0/state/nostore/k"))
    assert answer.status == 400 and claimed == [None]
    observability = app.runtime.observability
    assert observability is not None and observability.metrics is not None
    assert "ERR_STATE_STORE_NOT_FOUND" in observability.metrics.exposition()


@pytest.mark.parametrize("data", CASES[-3:], ids=["cl-and-te", "two-lengths", "negative-length"])
async def test_smuggling_attempts_are_400_and_closed(pair: Pair, data: bytes) -> None:
    async with connect(pair.lane_port) as connection:
        await connection.send(data)
        answers = await connection.until_closed()
    assert [a.status for a in answers] == [400]
    assert pair.claimed == []


async def test_a_state_get_whose_body_never_comes_is_answered(pair: Pair) -> None:
    # Over ASGI the route never reads a body, so it answers at once; the lane must not wait for one either.
    await exchange(pair.lane_port, SAVE)
    data = request("GET", "/v1.0/state/statestore/k", headers=[*AUTH, ("content-length", "100")])
    async with connect(pair.lane_port) as connection:
        await connection.send(data)
        (answer,) = await connection.answers(1)
        assert answer.status == 200 and answer.body == b'{"n":1}'
        await connection.send(b"z" * 100 + request("GET", "/v1.0/state/statestore/k", headers=AUTH))
        (_, again) = await connection.answers(2)
    assert again.status == 200 and again.body == b'{"n":1}'
