"""Name resolvers (sqlite registry, DNS template, static map), the Configuration that picks one, and the
directory in front of them (round robin, skipping failed instances)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from building_blocks.component import ComponentContext, Metadata
from building_blocks.errors import ComponentError, SpecError
from building_blocks.nameresolution.base import Instance, NameResolver, NoHost, ResolveRequest
from building_blocks.nameresolution.directory import Directory
from building_blocks.nameresolution.dns import DNSNameResolver
from building_blocks.nameresolution.loader import load_resolver
from building_blocks.nameresolution.sqlite import DEFAULT_DATABASE, SQLiteNameResolver
from building_blocks.nameresolution.static import StaticNameResolver


def request(app_id: str, namespace: str = "", port: int = 3500) -> ResolveRequest:
    return ResolveRequest(app_id, namespace, port)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Starts sqlite resolvers on one shared file, as several sidecar processes would; closes them after."""
    opened: list[SQLiteNameResolver] = []

    async def start(app_id: str = "", port: int = 0, interval: str = "5s", namespace: str = "") -> SQLiteNameResolver:
        metadata = Metadata({"connectionString": str(tmp_path / "nr.db"), "updateInterval": interval}, "test")
        resolver = SQLiteNameResolver("sqlite", metadata, ComponentContext(app_id))
        resolver.bind(Instance(app_id, namespace, "127.0.0.1", port))
        await resolver.init()
        opened.append(resolver)
        return resolver

    yield start
    for resolver in opened:
        await resolver.close()


async def test_sqlite_registers_resolves_and_deregisters(registry: Callable[..., Any]) -> None:
    first = await registry("orders", 5001)
    second = await registry("orders", 5002)
    await registry("billing", 5003)
    caller = await registry()  # serves no app: not registered
    assert await caller.resolve(request("orders")) == ["127.0.0.1:5001", "127.0.0.1:5002"]
    assert await caller.resolve(request("billing")) == ["127.0.0.1:5003"]
    assert await caller.resolve(request("orders", "default")) == ["127.0.0.1:5001", "127.0.0.1:5002"]
    with pytest.raises(NoHost, match=r"^no host found with the given ID$"):
        await caller.resolve(request("orders", "production"))
    with pytest.raises(NoHost):
        await caller.resolve(request("nobody"))
    await first.close()
    assert await caller.resolve(request("orders")) == ["127.0.0.1:5002"]
    await second.close()
    with pytest.raises(NoHost):
        await caller.resolve(request("orders"))


async def test_sqlite_entries_of_dead_sidecars_expire(registry: Callable[..., Any]) -> None:
    alive = await registry("orders", 5001, "0.3s")
    dead = await registry("orders", 5002, "0.3s")
    assert dead._heartbeat is not None
    dead._heartbeat.cancel()  # killed: no heartbeat, no deregistration
    dead._registration = ""
    await asyncio.sleep(0.5)
    assert await alive.resolve(request("orders")) == ["127.0.0.1:5001"]
    rows = await alive._db.run(lambda c: c.execute("SELECT address FROM hosts").fetchall())
    assert rows == [("127.0.0.1:5001",)]  # the live sidecar's heartbeat deleted the dead row


async def test_sqlite_address_taken_over_stops_advertising(registry: Callable[..., Any]) -> None:
    old = await registry("orders", 5001, "0.3s")
    await registry("billing", 5001, "0.3s")  # a new sidecar on the same address
    await asyncio.sleep(0.25)
    assert old._registration == ""
    assert await old.resolve(request("billing")) == ["127.0.0.1:5001"]
    with pytest.raises(NoHost):
        await old.resolve(request("orders"))


async def test_sqlite_file_is_only_opened_when_needed(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "nr.db"
    resolver = SQLiteNameResolver("sqlite", Metadata({"connectionString": str(path)}, "test"))
    resolver.bind(Instance("caller", "", "127.0.0.1", 0))
    await resolver.init()
    assert not path.exists()
    with pytest.raises(NoHost):
        await resolver.resolve(request("x"))
    assert path.exists()
    await resolver.close()


def test_sqlite_metadata_errors() -> None:
    with pytest.raises(SpecError, match="tableName"):
        SQLiteNameResolver("sqlite", Metadata({"tableName": "bad name"}, "cfg"))
    with pytest.raises(SpecError, match="updateInterval"):
        SQLiteNameResolver("sqlite", Metadata({"updateInterval": "soon"}, "cfg"))
    assert SQLiteNameResolver("sqlite", Metadata({}, "cfg")).settings.connection_string == DEFAULT_DATABASE


def static(apps: str) -> StaticNameResolver:
    return StaticNameResolver("static", Metadata({"apps": apps}, "cfg"))


async def test_static_map() -> None:
    resolver = static('{"orders": "orders:3500", "billing": ["billing-1:3500", "[::1]:3501"]}')
    assert await resolver.resolve(request("orders")) == ["orders:3500"]
    assert await resolver.resolve(request("billing")) == ["billing-1:3500", "[::1]:3501"]
    with pytest.raises(NoHost):
        await resolver.resolve(request("other"))
    for bad in ('["x"]', '{"orders": "no-port"}', '{"orders": []}', "not json"):
        with pytest.raises(SpecError):
            static(bad)


async def test_dns_template() -> None:
    default = DNSNameResolver("dns", Metadata({"resolveIPs": "false"}, "cfg"))
    assert await default.resolve(request("orders", "", 50002)) == ["orders-dapr.default.svc.cluster.local:50002"]
    go = DNSNameResolver(
        "dns", Metadata({"template": "{{.ID}}-{{.Namespace}}.internal:{{.Port}}", "resolveIPs": "false"}, "cfg")
    )
    assert await go.resolve(request("orders", "prod", 3500)) == ["orders-prod.internal:3500"]
    local = DNSNameResolver("dns", Metadata({"template": "localhost:{port}", "port": "4000"}, "cfg"))
    addresses = await local.resolve(request("orders"))
    assert "127.0.0.1:4000" in addresses and all(a.endswith(":4000") for a in addresses)
    broken = DNSNameResolver("dns", Metadata({"template": "{appID}.invalid:1"}, "cfg"))
    with pytest.raises(ComponentError, match=r"failed to resolve address for 'orders\.invalid'"):
        await broken.resolve(request("orders"))
    with pytest.raises(SpecError, match="template"):
        DNSNameResolver("dns", Metadata({"template": "{appID}.svc"}, "cfg"))
    with pytest.raises(SpecError, match="template"):
        DNSNameResolver("dns", Metadata({"template": "{nope}:1"}, "cfg"))


def configuration(name_resolution: str) -> list[tuple[str, dict[str, Any]]]:
    document = yaml.safe_load(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: cfg}\nspec:\n" + name_resolution
    )
    return [("config.yaml", document)]


def test_configuration_chooses_the_resolver() -> None:
    context = ComponentContext("me")
    default = load_resolver([], context)
    assert isinstance(default, SQLiteNameResolver)
    static_one = load_resolver(
        configuration("  nameResolution:\n    component: static\n    configuration: {apps: {a: 'h:1'}}\n"), context
    )
    assert isinstance(static_one, StaticNameResolver) and static_one.apps == {"a": ["h:1"]}
    kubernetes = load_resolver(configuration("  nameResolution: {component: kubernetes}\n"), context)
    assert isinstance(kubernetes, DNSNameResolver)
    no_resolution = load_resolver(configuration("  tracing: {samplingRate: '1'}\n"), context)
    assert isinstance(no_resolution, SQLiteNameResolver)
    with pytest.raises(SpecError, match=r"^config.yaml: configuration 'cfg': nameResolution: unknown component type"):
        load_resolver(configuration("  nameResolution: {component: mdns}\n"), context)
    with pytest.raises(SpecError, match="already set"):
        load_resolver(configuration("  nameResolution: {component: sqlite}\n") * 2, context)
    with pytest.raises(SpecError, match="must be a mapping"):
        load_resolver(configuration("  nameResolution: {component: static, configuration: [1]}\n"), context)


class Fixed(NameResolver):
    def __init__(self, addresses: list[str]) -> None:
        super().__init__("fixed", Metadata({}))
        self.addresses = addresses
        self.calls = 0

    async def resolve(self, request: ResolveRequest) -> list[str]:
        self.calls += 1
        return list(self.addresses)


async def test_directory_round_robin_and_failover() -> None:
    resolver = Fixed(["a:1", "b:1", "c:1"])
    directory = Directory(resolver, 3500, cache_seconds=60)
    firsts = [(await directory.candidates("x", ""))[0] for _ in range(6)]
    assert firsts == ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1"]
    assert resolver.calls == 1  # cached
    directory.failed("b:1")
    orders = [await directory.candidates("x", "") for _ in range(3)]
    assert all(order[-1] == "b:1" for order in orders)  # skipped, but still the last resort
    assert {order[0] for order in orders} == {"a:1", "c:1"}
    directory.succeeded("b:1")
    assert "b:1" in [(await directory.candidates("x", ""))[0] for _ in range(3)]


async def test_directory_cache_expires() -> None:
    resolver = Fixed(["a:1"])
    directory = Directory(resolver, 3500, cache_seconds=0.05)
    await directory.candidates("x", "")
    await asyncio.sleep(0.06)
    resolver.addresses = ["b:1"]
    assert await directory.candidates("x", "") == ["b:1"]
