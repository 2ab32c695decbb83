"""The ``path`` label of Dapr's HTTP metrics (``spec.metrics.http``), by daprd's rules.

* ``increasedCardinality`` true (Dapr's default, "legacy"): the path as requested, except that a state or
  secrets path is cut after the store (``/v1.0/state/mystore/key`` -> ``/v1.0/state/mystore``) and actor ids
  become ``{id}``; with ``pathMatching`` a path none of the patterns matches is reported as requested.
* ``increasedCardinality`` false: ``""``, or with ``pathMatching`` the pattern that matches (``/orders/{id}``),
  else ``""``.
* ``/dapr/config``, ``/dapr/metrics``, ``/dapr/subscribe`` and ``/healthz`` are always reported as they are.

``pathMatching`` patterns are Go ``ServeMux`` patterns: literal segments, ``{name}`` for one segment,
``{name...}`` for the rest, a trailing ``/`` for a whole subtree and ``{$}`` for an exact end; each pattern
not under ``/v1.0/invoke/`` also matches as an invoked method (``/v1.0/invoke/{app_id}/method<pattern>``).
The most specific matching pattern wins. Labels are cached per path (bounded), so a hot path costs a dict
lookup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from building_blocks.configuration_spec import MetricsHttpSpec

__all__ = ("PathLabels", "invoked_app")

_STATIC = frozenset({"/dapr/config", "/dapr/metrics", "/dapr/subscribe", "/healthz"})
_CACHE_LIMIT = 4096
_INVOKE = "/v1.0/invoke/"


def invoked_app(path: str) -> str:
    """The target app of an invocation path (``/v1.0/invoke/<app>/method/...``), else ``""``."""
    if not path.startswith(_INVOKE):
        return ""
    return path[len(_INVOKE) :].partition("/")[0]


def legacy_label(path: str) -> str:
    """daprd's ``convertPathToMetricLabel``."""
    if not path:
        return path
    parts = (path[1:] if path[0] == "/" else path).split("/", 5)
    if len(parts) < 3:
        return path
    if parts[0] == "actors":  # an actor callback on the app: the id hidden (daprd leaves no leading /)
        parts[2] = "{id}"
        return "/".join(parts)
    if parts[1] in ("state", "secrets"):
        return "/" + "/".join(parts[:3])
    if parts[1] == "actors":
        if len(parts) < 5:
            return path
        parts[3] = "{id}"
        return "/" + "/".join(parts[:5])
    return path


class _Pattern:
    """One ``ServeMux`` pattern, compiled; ``specificity`` orders overlapping patterns (more literal first)."""

    __slots__ = ("label", "regex", "specificity")

    def __init__(self, pattern: str, label: str) -> None:
        self.label = label
        _, _, path = pattern.rpartition(" ")  # "GET /x": the method is ignored, as a label has none
        regex, literal = "", 0
        segments = path.split("/")[1:]
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            if segment == "{$}" and last:
                break
            regex += "/"
            if segment.startswith("{") and segment.endswith("...}"):
                regex += ".*"
                break
            if segment.startswith("{") and segment.endswith("}"):
                regex += "[^/]+"
                continue
            regex += re.escape(segment)
            literal += len(segment) + 1
        else:
            if path.endswith("/"):
                regex += ".*"  # a subtree
        self.regex = re.compile(regex)
        self.specificity = (literal, -len(segments))

    def matches(self, path: str) -> bool:
        return self.regex.fullmatch(path) is not None


class PathLabels:
    """``label(path)``: the ``path`` label of a request under one Configuration's ``spec.metrics.http``."""

    __slots__ = ("_cache", "_legacy", "_patterns")

    def __init__(self, spec: MetricsHttpSpec) -> None:
        self._legacy = spec.legacy_paths
        patterns: list[_Pattern] = []
        for pattern in spec.path_matching:
            patterns.append(_Pattern(pattern, pattern))
            path = pattern.rpartition(" ")[2]
            if not path.startswith("/v1.0/invoke/"):
                patterns.append(_Pattern(f"/v1.0/invoke/{{app_id}}/method{path}", pattern))
        patterns.sort(key=lambda p: p.specificity, reverse=True)
        self._patterns: Sequence[_Pattern] = patterns
        self._cache: dict[str, str] = {}

    def label(self, path: str) -> str:
        found = self._cache.get(path)
        if found is None:
            found = self._compute(path)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[path] = found
        return found

    def _compute(self, path: str) -> str:
        if path in _STATIC:
            return path
        if self._patterns:
            for pattern in self._patterns:
                if pattern.matches(path):
                    return pattern.label
            return path if self._legacy else ""
        return legacy_label(path) if self._legacy else ""
