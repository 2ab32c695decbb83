"""The one route table: every declared route is reachable, by the table and over HTTP, and nothing else is."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import app.routers
from app.main import ROUTERS, routes
from app.routing import Route, Router
from tests.sidecar import component_yaml, running_sidecar

#: daprd's 500s behind the API: no app behind an invocation or a subscription, a secret the store lacks.
DOCUMENTED_500 = {"ERR_DIRECT_INVOKE", "ERR_SECRET_GET", "ERR_APP_CHANNEL_NIL"}
FALLBACK_MESSAGE = "failed getting app id either from the URL path or the header dapr-app-id"


def sample_path(route: Route, segment: str = "x") -> str:
    """The template with every parameter filled: a segment for ``{name}``, two for ``{name:path}``."""
    return re.sub(r"\{(\w+)(:path)?\}", lambda m: f"{segment}/y" if m.group(2) else segment, route.template)


def declared() -> list[tuple[str, Route]]:
    return [(method, route) for route in routes().routes for method in sorted(route.methods)]


def test_every_router_module_is_in_the_table() -> None:
    modules = [importlib.import_module(f"app.routers.{m.name}") for m in pkgutil.iter_modules(app.routers.__path__)]
    with_routes = {module.__name__ for module in modules if isinstance(getattr(module, "router", None), Router)}
    assert with_routes == {module.__name__ for module in ROUTERS}


@pytest.mark.parametrize(("method", "route"), declared(), ids=lambda v: v if isinstance(v, str) else v.template)
def test_every_declared_route_is_what_its_paths_match(method: str, route: Route) -> None:
    table = routes()
    for segment, unescaped in (("x", "x"), ("a%2Fb", "a/b"), ("%2e%2e", "..")):  # one parameter each, unescaped once
        path = sample_path(route, segment)
        match = table.match(method, path)
        assert match.route is route, (method, path, match.route.template)
        for name, value in match.params.items():
            assert value == (f"{unescaped}/y" if "{" + name + ":path}" in route.template else unescaped), (path, name)


def test_undeclared_methods_and_paths_fall_back_to_invocation() -> None:
    table = routes()
    assert table.match("DELETE", "/v1.0/state/s").route is table.fallback
    assert table.match("GET", "/v1.0/state/s").route is table.fallback  # daprd: no key, so an invocation
    assert table.match("POST", "/v1.0/publish/p").route is table.fallback
    assert table.match("GET", "/v1.0-alpha1/lock/s").route is table.fallback  # POST only, as daprd
    assert table.match("GET", "/orders/new").route is table.fallback
    assert table.match("GET", "/").route is table.fallback


async def test_every_declared_route_reaches_its_endpoint_over_http(tmp_path: Path) -> None:
    for kind in ("state.in-memory", "pubsub.in-memory", "lock.in-memory", "sequencer.in-memory"):
        (tmp_path / f"{kind}.yaml").write_text(component_yaml("x", kind))
    (tmp_path / "configuration.yaml").write_text(component_yaml("x", "configuration.in-memory"))
    (tmp_path / "secrets.json").write_text('{"x": "s"}')
    secrets = component_yaml("x", "secretstores.local.file", {"secretsFile": str(tmp_path / "secrets.json")})
    (tmp_path / "secretstore.yaml").write_text(secrets)
    async with running_sidecar(tmp_path) as sidecar:
        for method, route in declared():
            if route.template == "/v1.0/shutdown":
                continue  # it would stop the sidecar; the table test above covers its matching
            path = sample_path(route)
            response = await sidecar.client.request(method, path, content=b"{}")
            fell_back = response.status_code == 404 and FALLBACK_MESSAGE in response.text
            assert not fell_back, (method, path)
            if method == "HEAD":
                continue  # no body to tell the error by; its GET twin is checked
            documented = response.status_code == 500 and response.json()["errorCode"] in DOCUMENTED_500
            unserved = response.status_code == 501 and response.json()["errorCode"] == "ERR_NOT_IMPLEMENTED"
            assert response.status_code < 500 or documented or unserved, (method, path, response.text)
