"""Both lanes decide before dispatch with one piece of code: ``FrontDoor.admit`` on the API port,
``HopApp.admit`` on the internal listener. Every refusal is the door's own answer on both lanes, byte for
byte, and a check added to a door's ``admit`` applies to both lanes with no change to ``app/lane``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from starlette.responses import Response
from starlette.types import Scope

from app.http_client import Response as HttpResponse
from app.http_server import hop_protocol
from app.invocation.hop_security import HopSecurity
from app.invocation.hop_server import HopAdmitted, HopApp
from app.lane.cycle import LaneCycle
from app.lane.direct import DirectCall
from app.lane.hop import HopLane
from app.main import create_app
from app.middleware import Admitted, FrontDoor, plain_response
from app.runtime import Runtime
from app.settings import Settings
from tests.api.test_invoke_api import serving
from tests.e2e.apps.echo import EchoApp
from tests.lane.conftest import TOKEN, Pair
from tests.lane.wire import Answer, exchange, request, served

AUTH = [("dapr-api-token", TOKEN)]
TEAPOT = plain_response(418, b"a check added once\n")


def _teapot(scope: Scope) -> bool:
    return any(name == b"x-teapot" for name, _ in scope["headers"])


async def both(pair: Pair, data: bytes) -> Answer:
    """``data``'s answer on each lane: they must be the same, bytes but the date."""
    (lane,) = await exchange(pair.lane_port, data)
    (asgi,) = await exchange(pair.asgi_port, data)
    assert lane.wire() == asgi.wire()
    return lane


REFUSALS = {
    "no token": (request("GET", "/v1.0/state/statestore/k"), 401),
    "wrong token": (request("GET", "/v1.0/state/statestore/k", headers=[("dapr-api-token", "nope")]), 401),
    "no token, a body": (request("POST", "/v1.0/state/statestore", b"[]"), 401),
    "no token, an invocation": (request("POST", "/v1.0/invoke/a/method/m", b"x"), 401),
    "over --max-body-size": (request("POST", "/v1.0/state/statestore", b"x" * 4097, AUTH), 413),
    "over it, never sent": (request("POST", "/v1.0/publish/pubsub/t", headers=[*AUTH, ("content-length", "9999")]), 413),
    "a bad escape": (request("GET", "/v1.0/state/statestore/%zz", headers=AUTH), 400),
    "escapes not UTF-8": (request("GET", "/v1.0/state/statestore/%ff", headers=AUTH), 400),
    "a bad escape, cleaned": (request("GET", "//v1.0/./state/statestore/%g1/", headers=AUTH), 400),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_every_refusal_is_the_doors_on_both_lanes(pair: Pair, case: str) -> None:
    data, status = REFUSALS[case]
    answer = await both(pair, data)
    assert answer.status == status
    assert len(pair.claimed) == 1  # answered by the lane, with the door's decision


async def test_refusals_answered_by_the_lane_are_counted(pair: Pair) -> None:
    await exchange(pair.lane_port, REFUSALS["no token"][0])
    assert pair.claimed
    observability = pair.app.runtime.observability
    assert observability is not None and observability.metrics is not None
    assert 'status="401"' in observability.metrics.exposition()


async def test_a_check_added_to_the_door_applies_to_both_lanes(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    admit = FrontDoor.admit

    def stricter(self: FrontDoor, scope: Scope, hold: bool = True) -> Admitted | Response | None:
        admitted = admit(self, scope, hold)  # a check added last
        return TEAPOT if _teapot(scope) else admitted

    monkeypatch.setattr(FrontDoor, "admit", stricter)
    for data in (
        request("GET", "/v1.0/state/statestore/k", headers=[*AUTH, ("x-teapot", "1")]),
        request("POST", "/v1.0/invoke/a/method/m", b"x", [*AUTH, ("x-teapot", "1")]),
        request("GET", "/v1.0/metadata", headers=[*AUTH, ("x-teapot", "1")]),
    ):
        answer = await both(pair, data)
        assert (answer.status, answer.body) == (418, b"a check added once\n")
    assert len(pair.claimed) == 3
    answer = await both(pair, request("POST", "/v1.0/state/statestore", b'[{"key":"t","value":1}]', AUTH))
    assert answer.status == 204


# -- the internal listener ---------------------------------------------------------------------------------------

SECRET = "hop-secret"
CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: hops}
spec:
  nameResolution:
    component: sqlite
    configuration: {connectionString: '%s'}
  accessControl:
    defaultAction: allow
    trustDomain: public
    policies:
      - appId: shunned
        defaultAction: deny
        trustDomain: public
        namespace: default
"""


@dataclass
class HopPair:
    lane_port: int
    asgi_port: int
    claimed: list[str]
    runtime: Runtime


@pytest.fixture
async def hops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HopPair]:
    """The internal listener of a sidecar whose app answers, on both lanes."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG % (tmp_path / "nr.db"))
    claimed: list[str] = []
    claim = HopLane.claim

    def spying(self: HopLane, *args: object) -> LaneCycle | None:
        cycle = claim(self, *args)  # type: ignore[arg-type]
        if cycle is not None:
            claimed.append(cycle.scope["raw_path"].decode())
        return cycle

    monkeypatch.setattr(HopLane, "claim", spying)
    async with contextlib.AsyncExitStack() as stack:
        app_port = await stack.enter_async_context(serving(EchoApp("one")))
        settings = Settings(app_id="callee", resources_paths=(), config_file=config, app_port=app_port, metrics_port=0)
        door = create_app(settings)
        await stack.enter_async_context(door.lifespan())
        await door.runtime.wait_ready()
        hop = HopApp(door.runtime, HopSecurity(SECRET.encode()))
        asgi = hop_protocol(replace(settings, http_lane="asgi"), hop)
        lane = hop_protocol(replace(settings, http_lane="protocol"), hop)
        asgi_port = await stack.enter_async_context(served(hop, http=asgi))
        lane_port = await stack.enter_async_context(served(hop, http=lane))
        yield HopPair(lane_port, asgi_port, claimed, door.runtime)


TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # else each hop starts a trace of its own


def hop(target: str, secret: str = SECRET, caller: str = "caller", method: str = "POST", body: bytes = b"x") -> bytes:
    headers = [("layotto-internal-token", secret), ("dapr-caller-app-id", caller), ("dapr-caller-namespace", "default")]
    return request(method, target, body, [*headers, ("traceparent", TRACE)])


async def hop_both(hops: HopPair, data: bytes) -> Answer:
    (lane,) = await exchange(hops.lane_port, data)
    (asgi,) = await exchange(hops.asgi_port, data)
    assert lane.wire() == asgi.wire()
    return lane


HOP_CASES = {
    "served": (hop("/v1.0/invoke/callee/method/status/201"), 201),
    "served, echoed": (hop("/v1.0/invoke/callee/method/echo?q=1", method="PUT", body=b'{"a":1}'), 200),
    "no secret": (request("POST", "/v1.0/invoke/callee/method/status/201", b"x"), 401),
    "wrong secret": (hop("/v1.0/invoke/callee/method/status/201", secret="guess"), 401),
    "a bad escape": (hop("/v1.0/invoke/callee/method/%zz"), 400),
    "not an invocation": (hop("/v1.0/state/statestore/k", method="GET", body=b""), 404),
    "access control": (hop("/v1.0/invoke/callee/method/status/201", caller="shunned"), 403),
}


@pytest.mark.parametrize("case", list(HOP_CASES))
async def test_every_hop_is_answered_alike_on_both_lanes(hops: HopPair, case: str) -> None:
    data, status = HOP_CASES[case]
    answer = await hop_both(hops, data)
    assert answer.status == status
    assert len(hops.claimed) == 1


async def test_a_check_added_to_the_hop_applies_to_both_lanes(hops: HopPair, monkeypatch: pytest.MonkeyPatch) -> None:
    admit = HopApp.admit

    def stricter(self: HopApp, scope: Scope, hold: bool = True) -> HopAdmitted | Response | None:
        admitted = admit(self, scope, hold)  # a check added last
        return TEAPOT if _teapot(scope) else admitted

    monkeypatch.setattr(HopApp, "admit", stricter)
    data = hop("/v1.0/invoke/callee/method/status/201").replace(b"\r\n\r\n", b"\r\nx-teapot: 1\r\n\r\n", 1)
    answer = await hop_both(hops, data)
    assert (answer.status, answer.body) == (418, b"a check added once\n")
    assert len(hops.claimed) == 1


async def test_hops_served_from_the_lanes_callbacks_are_answered_and_counted_alike(
    hops: HopPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct: list[bool] = []
    answered = DirectCall.answered

    def spying(self: DirectCall, response: HttpResponse) -> None:
        direct.append(self.hop)
        answered(self, response)

    monkeypatch.setattr(DirectCall, "answered", spying)
    data = hop("/v1.0/invoke/callee/method/echo?q=1", method="PUT", body=b'{"a":1}')
    for _ in range(2):
        answer = await hop_both(hops, data)
        assert answer.status == 200 and json.loads(answer.body)["body"] == '{"a":1}'
    assert direct and all(direct)  # the lane's hops, once the app's connection was pooled
    observability = hops.runtime.observability
    assert observability is not None and observability.metrics is not None
    exposition = observability.metrics.exposition()
    assert 'dapr_runtime_service_invocation_req_recv_total{app_id="callee",src_app_id="caller"} 4\n' in exposition
    assert 'invocation_res_sent_total{app_id="callee",dst_app_id="caller",status="200"} 4\n' in exposition
