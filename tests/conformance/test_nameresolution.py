"""The name-resolution conformance suite: every ``nameresolution.*`` component, through its contract.

Each resolver is built from its registry entry, as the runtime builds it from a Configuration's
``nameResolution``, and held to ``building_blocks.nameresolution.base``: ``resolve`` answers every address
of a served app as ``host:port``, never an empty list; an app it cannot resolve is a ``ComponentError``;
the empty namespace is ``default``; bad configuration fails with a ``SpecError`` naming where.
Features: ``REGISTRY`` resolvers register the sidecar they run as (``bind`` then ``init``) and deregister
it on ``close``; ``INSTANCES`` resolvers know several addresses per app; ``TEMPLATE`` resolvers know every
app id (an address is rendered from it, then looked up in DNS).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError, SpecError
from building_blocks.nameresolution.base import Instance, NameResolver, NoHost, ResolveRequest
from building_blocks.nameresolution.dns import split_address
from building_blocks.registry import resolve

REGISTRY, INSTANCES, TEMPLATE = "REGISTRY", "INSTANCES", "TEMPLATE"
PORT = 50002  # the internal port every sidecar of a test listens on (the request's port)
HOST = "127.0.0.1"

#: app id -> the ports its instances listen on, on ``HOST``
Apps = Mapping[str, Sequence[int]]


def build(component_type: str, metadata: Mapping[str, str], app_id: str = "caller") -> NameResolver:
    """A resolver as the runtime makes it: the registry's class, the configuration map as metadata."""
    resolver = resolve(component_type)("nameresolution", Metadata(metadata, "config.yaml"), ComponentContext(app_id))
    assert isinstance(resolver, NameResolver)
    return resolver


@contextlib.asynccontextmanager
async def sqlite_world(component_type: str, tmp_path: Path, apps: Apps) -> AsyncIterator[NameResolver]:
    """Every instance registers itself in one shared file, as sidecar processes do; the caller serves no app."""
    metadata = {"connectionString": str(tmp_path / "nameresolution.db")}
    async with contextlib.AsyncExitStack() as stack:
        for app_id, ports in apps.items():
            for port in ports:
                instance = build(component_type, metadata, app_id)
                instance.bind(Instance(app_id, "", HOST, port))
                await stack.enter_async_context(instance)
        caller = build(component_type, metadata)
        caller.bind(Instance("caller", "", HOST, 0))
        yield await stack.enter_async_context(caller)


@contextlib.asynccontextmanager
async def static_world(component_type: str, tmp_path: Path, apps: Apps) -> AsyncIterator[NameResolver]:
    table = {app_id: [f"{HOST}:{port}" for port in ports] for app_id, ports in apps.items()}
    async with build(component_type, {"apps": orjson.dumps(table).decode()}) as resolver:
        yield resolver


def template_world(template: str) -> Callable[[str, Path, Apps], contextlib.AbstractAsyncContextManager[NameResolver]]:
    """A DNS resolver handing out the rendered host name (``resolveIPs: false``): every app id has one."""

    @contextlib.asynccontextmanager
    async def world(component_type: str, tmp_path: Path, apps: Apps) -> AsyncIterator[NameResolver]:
        metadata = {"resolveIPs": "false"} | ({"template": template} if template else {})
        async with build(component_type, metadata) as resolver:
            yield resolver

    return world


@dataclass(frozen=True)
class ResolverCase:
    component_type: str
    features: frozenset[str]
    #: a resolver that knows exactly ``apps`` (or, for ``TEMPLATE``, renders any app id)
    world: Callable[[str, Path, Apps], contextlib.AbstractAsyncContextManager[NameResolver]]
    #: what ``resolve`` answers for a served app
    expected: Callable[[str, Sequence[int]], list[str]]
    #: configuration maps the resolver refuses, with the field the error must name
    bad: tuple[tuple[dict[str, str], str], ...] = ()


def on_host(app_id: str, ports: Sequence[int]) -> list[str]:
    return [f"{HOST}:{port}" for port in sorted(ports)]


CASES = {
    "sqlite": ResolverCase(
        "nameresolution.sqlite",
        frozenset({REGISTRY, INSTANCES}),
        sqlite_world,
        on_host,
        (({"tableName": "no-such table"}, "tableName"), ({"updateInterval": "0s"}, "updateInterval")),
    ),
    "static": ResolverCase(
        "nameresolution.static",
        frozenset({INSTANCES}),
        static_world,
        on_host,
        (({"apps": "[1]"}, "apps"), ({"apps": '{"orders": "no-port"}'}, "orders")),
    ),
    "dns": ResolverCase(
        "nameresolution.dns",
        frozenset({TEMPLATE}),
        template_world("{appID}.{namespace}.conformance.test:{port}"),
        lambda app_id, ports: [f"{app_id}.default.conformance.test:{PORT}"],
        (({"template": "{appID}.svc"}, "template"), ({"port": "x"}, "port")),
    ),
    "kubernetes": ResolverCase(
        "nameresolution.kubernetes",
        frozenset({TEMPLATE}),
        template_world(""),  # Dapr's Kubernetes default: {appID}-dapr.{namespace}.svc.cluster.local:{port}
        lambda app_id, ports: [f"{app_id}-dapr.default.svc.cluster.local:{PORT}"],
        (({"template": "{nope}:1"}, "template"), ({"resolveIPs": "maybe"}, "resolveIPs")),
    ),
}
COMPONENT_TYPES = frozenset(case.component_type for case in CASES.values())


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> ResolverCase:
    return CASES[request.param]


def app() -> str:
    return f"app-{uuid.uuid4().hex[:12]}"


def ask(app_id: str, namespace: str = "") -> ResolveRequest:
    return ResolveRequest(app_id, namespace, PORT)


async def test_a_served_app_resolves_to_host_port_addresses(case: ResolverCase, tmp_path: Path) -> None:
    orders = app()
    async with case.world(case.component_type, tmp_path, {orders: [PORT]}) as resolver:
        addresses = await resolver.resolve(ask(orders))
    assert addresses == case.expected(orders, [PORT])
    for address in addresses:
        host, port = split_address(address)
        assert host and port > 0


async def test_the_empty_namespace_is_default(case: ResolverCase, tmp_path: Path) -> None:
    orders = app()
    async with case.world(case.component_type, tmp_path, {orders: [PORT]}) as resolver:
        assert await resolver.resolve(ask(orders, "default")) == await resolver.resolve(ask(orders))


async def test_every_instance_of_an_app_is_answered(case: ResolverCase, tmp_path: Path) -> None:
    if INSTANCES not in case.features:
        pytest.skip("one address per app")
    orders, billing = app(), app()
    async with case.world(case.component_type, tmp_path, {orders: [PORT, PORT + 1], billing: [PORT + 2]}) as resolver:
        assert sorted(await resolver.resolve(ask(orders))) == case.expected(orders, [PORT, PORT + 1])
        assert await resolver.resolve(ask(billing)) == case.expected(billing, [PORT + 2])


async def test_an_unknown_app_is_no_host(case: ResolverCase, tmp_path: Path) -> None:
    if TEMPLATE in case.features:
        pytest.skip("a template resolver renders an address for every app id")
    async with case.world(case.component_type, tmp_path, {app(): [PORT]}) as resolver:
        with pytest.raises(NoHost, match=r"^no host found with the given ID$"):
            await resolver.resolve(ask(app()))


async def test_a_rendered_name_is_looked_up_in_dns(case: ResolverCase) -> None:
    if TEMPLATE not in case.features:
        pytest.skip("not a template resolver")
    async with build(case.component_type, {"template": "localhost:{port}"}) as local:
        addresses = await local.resolve(ask(app()))
    assert f"{HOST}:{PORT}" in addresses and all(split_address(a)[1] == PORT for a in addresses)
    async with build(case.component_type, {"template": "{appID}.invalid:{port}"}) as broken:
        orders = app()
        with pytest.raises(ComponentError, match=rf"^failed to resolve address for '{orders}\.invalid'"):
            await broken.resolve(ask(orders))


async def test_an_instance_registers_and_deregisters(case: ResolverCase, tmp_path: Path) -> None:
    if REGISTRY not in case.features:
        pytest.skip("no registry: the resolver knows apps from its configuration")
    orders = app()
    async with case.world(case.component_type, tmp_path, {}) as caller:
        with pytest.raises(NoHost):
            await caller.resolve(ask(orders))
        metadata = {"connectionString": str(tmp_path / "nameresolution.db")}
        instance = build(case.component_type, metadata, orders)
        instance.bind(Instance(orders, "", HOST, PORT))
        async with instance:
            assert await caller.resolve(ask(orders)) == [f"{HOST}:{PORT}"]
            with pytest.raises(NoHost):  # registered in "default" only
                await caller.resolve(ask(orders, "production"))
        with pytest.raises(NoHost):
            await caller.resolve(ask(orders))
        unserved = build(case.component_type, metadata, orders)
        unserved.bind(Instance(orders, "", HOST, 0))  # serves no app: never advertised
        async with unserved:
            with pytest.raises(NoHost):
                await caller.resolve(ask(orders))


async def test_bad_configuration_names_the_field(case: ResolverCase) -> None:
    assert case.bad, "every resolver declares configuration it refuses"
    for metadata, field in case.bad:
        with pytest.raises(SpecError, match=rf"^config\.yaml: .*{field}"):
            build(case.component_type, metadata)
