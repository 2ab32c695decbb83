"""The one route table: routers declare their routes here, and the front door dispatches every request by it.

A router module declares ``router = Router()`` and decorates its endpoints (``@router.get(template)``,
``@router.api_route(template, methods=[...])``); an endpoint takes the ``Request`` and its path parameters
by name and returns a ``Response``. ``RouteTable`` compiles the declarations once at start-up into an
index keyed by the method and the first two path segments (``("GET", "v1.0", "state")``), so a request
costs one split, one dict lookup and a regex match over the one to six routes of its bucket.

Matching is daprd's (``app.paths``): templates match the cleaned, still-encoded path, and each parameter is
unescaped once afterwards. ``{name}`` is one segment, ``{name:path}`` the rest of the path. A path that
matches no route for its method goes to the fallback (service invocation), as daprd's router sends both
"not found" and "method not allowed" there. As in Starlette, a ``GET`` route also answers ``HEAD``.

A route's regex is compiled the first time a request reaches its bucket (``LazyPattern``): compiling the 41
of the routers at import was 3.3 ms of every sidecar's start-up, for routes that most apps never call; after
the first match it costs what a compiled pattern costs.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from starlette.responses import Response

from app.paths import unescape

__all__ = ("Endpoint", "Match", "Route", "RouteTable", "Router")

Endpoint = Callable[..., Awaitable[Response]]
_ANY = re.compile(".*")
_PARAM = re.compile(r"\{(\w+)(?::(path))?\}")


def _bucket(path: str) -> tuple[str, str]:
    """The first two segments of a path (``""`` when missing): the index key, with the method."""
    parts = path.split("/", 3)
    return (parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")


class LazyPattern:
    """A regex compiled at its first ``fullmatch``, which then is the compiled pattern's own method."""

    __slots__ = ("fullmatch", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.fullmatch: Callable[[str], re.Match[str] | None] = self._compile_and_match

    def _compile_and_match(self, text: str) -> re.Match[str] | None:
        self.fullmatch = re.compile(self.source).fullmatch
        return self.fullmatch(text)


@dataclass(frozen=True, slots=True)
class Route:
    """One declared route: ``methods`` on ``template``, answered by ``endpoint``."""

    template: str
    methods: frozenset[str]
    endpoint: Endpoint
    pattern: re.Pattern[str] | LazyPattern

    @classmethod
    def declare(cls, template: str, methods: Iterable[str], endpoint: Endpoint) -> Route:
        verbs = {method.upper() for method in methods}
        if "GET" in verbs:
            verbs.add("HEAD")
        if "{" in "/".join(template.split("/")[:3]):
            raise ValueError(f"{template}: the first two segments must be literal (they are the index key)")
        regex, position = "", 0
        for param in _PARAM.finditer(template):
            regex += re.escape(template[position : param.start()])
            regex += f"(?P<{param.group(1)}>.*)" if param.group(2) else f"(?P<{param.group(1)}>[^/]+)"
            position = param.end()
        regex += re.escape(template[position:])
        return cls(template, frozenset(verbs), endpoint, LazyPattern(regex))


class Router:
    """The routes of one router module, in declaration order (the order in which they are tried)."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def api_route(self, template: str, methods: Sequence[str]) -> Callable[[Endpoint], Endpoint]:
        def declare(endpoint: Endpoint) -> Endpoint:
            self.routes.append(Route.declare(template, methods, endpoint))
            return endpoint

        return declare

    def get(self, template: str) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(template, ["GET"])

    def post(self, template: str) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(template, ["POST"])

    def put(self, template: str) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(template, ["PUT"])

    def delete(self, template: str) -> Callable[[Endpoint], Endpoint]:
        return self.api_route(template, ["DELETE"])


class Match(NamedTuple):
    """The route a request dispatches to, with its parameters unescaped (a tuple: the hot path makes one per
    request, and a frozen dataclass costs twice as much to build)."""

    route: Route
    params: dict[str, str]


class RouteTable:
    """Every route of the given routers, indexed; ``fallback`` answers what none of them matches."""

    def __init__(self, routers: Iterable[Router], fallback: Endpoint) -> None:
        self.routes = [route for router in routers for route in router.routes]
        self.fallback = Route("/{path:path}", frozenset(), fallback, _ANY)
        self._index: dict[tuple[str, str, str], list[Route]] = {}
        for route in self.routes:
            first, second = _bucket(route.template)
            for method in route.methods:
                self._index.setdefault((method, first, second), []).append(route)

    def match(self, method: str, path: str) -> Match:
        """The first declared route for ``method`` whose template matches the encoded ``path``."""
        first, second = _bucket(path)
        for route in self._index.get((method, first, second), ()):
            found = route.pattern.fullmatch(path)
            if found is not None:
                params = found.groupdict()
                if "%" in path:
                    params = {name: unescape(value) for name, value in params.items()}
                return Match(route, params)
        return Match(self.fallback, {})
