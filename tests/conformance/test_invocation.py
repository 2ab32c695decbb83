"""The invocation conformance suite: the invocation block over every name resolver that knows instances.

The block is driven through its API (``invoke`` for the app's calls, ``serve_hop`` for the internal
listener's) with a transport that records what it is asked to carry and answers as each peer is scripted
to (the HTTP transport itself is proven end to end by ``tests/e2e/test_invoke_processes.py``). What every
resolver must give the block: the identity is the sidecar's and never the client's, a hop carries the hop
credentials and the caller's trace, an instance that refuses connections or no longer serves the app is
left for the next one, and a target's error answer is its answer, not a retry.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from building_blocks.component import ComponentContext
from building_blocks.errors import InvocationFailed
from building_blocks.invocation.base import MISROUTED, Call, TransportFailed
from building_blocks.invocation.block import InvocationBlock, Misrouted
from building_blocks.invocation.body import RequestBody
from building_blocks.invocation.headers import Headers
from building_blocks.invocation.targets import Target
from building_blocks.nameresolution.base import Instance
from building_blocks.resiliency import Resiliency
from tests.conformance.test_nameresolution import HOST, Apps, sqlite_world, static_world

WORLDS = {"nameresolution.sqlite": sqlite_world, "nameresolution.static": static_world}
COMPONENT_TYPES = frozenset(WORLDS)
PORTS = (41001, 41002, 41003)


@dataclass
class Reply:
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    closed: bool = False

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    async def aread(self) -> bytes:
        return self.body

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Sent:
    where: str
    verb: str
    path: str
    query: bytes
    headers: Headers
    body: bytes


class ScriptedTransport:
    """Carries calls to scripted peers: an address maps to a reply, or to a failure to connect."""

    def __init__(self, has_app: bool = True) -> None:
        self.has_app = has_app
        self.sent: list[Sent] = []
        self.peers: dict[str, Reply | TransportFailed | list[Reply | TransportFailed]] = {}

    def hop_headers(self) -> Headers:
        return [(b"layotto-internal-token", b"hop-secret")]

    async def _body(self, body: RequestBody) -> bytes:
        content = body.content()
        return content if isinstance(content, bytes) else b"".join([chunk async for chunk in content])

    async def app(self, verb: str, method: str, query: bytes, headers: Headers, body: RequestBody) -> Reply:
        self.sent.append(Sent("app", verb, method, query, headers, await self._body(body)))
        return Reply()

    async def peer(
        self, address: str, verb: str, path: str, query: bytes, headers: Headers, body: RequestBody
    ) -> Reply:
        self.sent.append(Sent(address, verb, path, query, headers, await self._body(body)))
        outcome = self.peers.get(address, Reply())
        if isinstance(outcome, list):
            outcome = outcome.pop(0) if len(outcome) > 1 else outcome[0]
        if isinstance(outcome, TransportFailed):
            raise outcome
        return outcome

    async def external(
        self, target: Target, verb: str, method: str, query: bytes, headers: Headers, body: RequestBody
    ) -> Reply:
        self.sent.append(Sent(target.base_url, verb, method, query, headers, await self._body(body)))
        return Reply()


def call(verb: str = "POST", body: bytes = b"{}", headers: Headers | None = None, query: bytes = b"") -> Call:
    async def chunks() -> AsyncIterator[bytes]:
        yield body

    return Call(verb, "", query, headers or [], RequestBody(chunks(), len(body), False))


@contextlib.asynccontextmanager
async def block_over(
    component_type: str, tmp_path: Path, apps: Apps, transport: ScriptedTransport, resiliency: Resiliency | None = None
) -> AsyncIterator[InvocationBlock[Reply]]:
    async with WORLDS[component_type](component_type, tmp_path, apps) as resolver:
        block: InvocationBlock[Reply] = InvocationBlock(ComponentContext("caller"))
        block.configure(resolver, resiliency or Resiliency(), {}, Instance("caller", "", HOST, 0), PORTS[0])
        block.bind(transport)
        yield block


def value(headers: Headers, name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


@pytest.fixture(params=sorted(WORLDS))
def component_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_hop_carries_the_sidecars_identity_credentials_and_trace(component_type: str, tmp_path: Path) -> None:
    transport = ScriptedTransport()
    forged = [
        (b"dapr-caller-app-id", b"admin"),
        (b"dapr-callee-app-id", b"x"),
        (b"layotto-internal-token", b"guess"),
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        (b"x-custom", b"kept"),
    ]
    async with block_over(component_type, tmp_path, {"orders": PORTS[:1]}, transport) as block:
        reply = await block.invoke("orders", "/new/a b", call(headers=forged, query=b"q=1"))
    assert reply.status_code == 200
    (sent,) = transport.sent
    assert sent.where == f"{HOST}:{PORTS[0]}" and sent.path == "/v1.0/invoke/orders/method/new/a%20b"
    assert sent.query == b"q=1" and sent.body == b"{}"
    assert value(sent.headers, b"dapr-caller-app-id") == [b"caller"]
    assert value(sent.headers, b"dapr-callee-app-id") == [b"orders"]
    assert value(sent.headers, b"layotto-internal-token") == [b"hop-secret"]
    assert value(sent.headers, b"traceparent") == [b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
    assert value(sent.headers, b"x-custom") == [b"kept"]


async def test_an_instance_that_refuses_or_no_longer_serves_the_app_is_left_for_the_next(
    component_type: str, tmp_path: Path
) -> None:
    transport = ScriptedTransport()
    transport.peers[f"{HOST}:{PORTS[0]}"] = TransportFailed("dial tcp: connect: connection refused", True)
    transport.peers[f"{HOST}:{PORTS[1]}"] = Reply(headers={MISROUTED: "1"})
    async with block_over(component_type, tmp_path, {"orders": PORTS}, transport) as block:
        reply = await block.invoke("orders", "m", call())
    assert reply.status_code == 200
    assert sorted(sent.where for sent in transport.sent) == sorted(f"{HOST}:{port}" for port in PORTS)
    assert transport.sent[-1].where == f"{HOST}:{PORTS[2]}"


async def test_an_error_answer_is_the_targets_answer(component_type: str, tmp_path: Path) -> None:
    transport = ScriptedTransport()
    transport.peers[f"{HOST}:{PORTS[0]}"] = Reply(status_code=503, body=b"busy")
    async with block_over(component_type, tmp_path, {"orders": PORTS[:1]}, transport) as block:
        reply = await block.invoke("orders", "m", call())
    assert (reply.status_code, len(transport.sent)) == (503, 1)


async def test_an_unknown_app_fails_as_daprd_reports_it(component_type: str, tmp_path: Path) -> None:
    transport = ScriptedTransport()
    async with block_over(component_type, tmp_path, {"orders": PORTS[:1]}, transport) as block:
        with pytest.raises(InvocationFailed) as failed:
            await block.invoke("nobody", "m", call())
    assert "nobody" in str(failed.value) and transport.sent == []


async def test_the_own_app_id_goes_to_the_app_and_a_hop_keeps_the_callers_identity(
    component_type: str, tmp_path: Path
) -> None:
    transport = ScriptedTransport()
    async with block_over(component_type, tmp_path, {"orders": PORTS[:1]}, transport) as block:
        await block.invoke("caller", "/local", call(headers=[(b"dapr-caller-app-id", b"forged")]))
        hop_headers = [(b"dapr-caller-app-id", b"checkout"), (b"dapr-caller-namespace", b"shop")]
        await block.serve_hop("caller", "/hop", call(headers=hop_headers))
        with pytest.raises(Misrouted):
            await block.serve_hop("orders", "/hop", call())
    own, hop = transport.sent
    assert (own.where, own.path, value(own.headers, b"dapr-caller-app-id")) == ("app", "local", [b"caller"])
    assert value(hop.headers, b"dapr-caller-app-id") == [b"checkout"]
    assert value(hop.headers, b"dapr-caller-namespace") == [b"shop"]
    assert value(hop.headers, b"dapr-callee-app-id") == [b"caller"]


async def test_without_an_app_or_while_it_is_unhealthy_the_local_call_fails(
    component_type: str, tmp_path: Path
) -> None:
    async with block_over(component_type, tmp_path, {}, ScriptedTransport(has_app=False)) as block:
        with pytest.raises(InvocationFailed, match="app channel not initialized"):
            await block.invoke("caller", "m", call())
    transport = ScriptedTransport()
    async with block_over(component_type, tmp_path, {}, transport) as block:
        block.bind(transport, lambda: False)
        with pytest.raises(InvocationFailed, match="app is not in a healthy state"):
            await block.invoke("caller", "m", call())
    assert transport.sent == []


def policies(retries: dict[str, object], targets: dict[str, object] | None = None) -> Resiliency:
    document = {"metadata": {"name": "r"}, "spec": {"policies": {"retries": retries}, "targets": targets or {}}}
    return Resiliency.load([("resiliency.yaml", document)], "caller")


async def test_an_app_without_a_target_of_its_own_gets_the_default_app_policy(
    component_type: str, tmp_path: Path
) -> None:
    """Dapr's ``EndpointPolicy``: ``DefaultAppRetryPolicy`` (before ``DefaultRetryPolicy``) for any app id
    without its own target; an app's own target replaces the defaults whole."""
    retry = {"policy": "constant", "duration": "1ms", "maxRetries": 2}
    address = f"{HOST}:{PORTS[0]}"
    defaults = policies({"DefaultAppRetryPolicy": retry, "DefaultRetryPolicy": {**retry, "maxRetries": 0}})
    transport = ScriptedTransport()
    transport.peers[address] = [Reply(status_code=503), Reply(status_code=503), Reply()]
    async with block_over(component_type, tmp_path, {"orders": PORTS[:1]}, transport, defaults) as block:
        assert (await block.invoke("orders", "m", call())).status_code == 200
    assert len(transport.sent) == 3
    own = policies(
        {"DefaultAppRetryPolicy": retry, "none": {**retry, "maxRetries": 0}}, {"apps": {"orders": {"retry": "none"}}}
    )
    transport = ScriptedTransport()
    transport.peers[address] = [Reply(status_code=503), Reply()]
    async with block_over(component_type, tmp_path, {"orders": PORTS[:1]}, transport, own) as block:
        assert (await block.invoke("orders", "m", call())).status_code == 503
    assert len(transport.sent) == 1
