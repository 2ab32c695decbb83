"""What an invocation's app id names, and the method as the target app will see it (Dapr's rules).

* ``http://...`` / ``https://...`` or the name of an ``HTTPEndpoint`` resource: an external service;
* ``app`` (this sidecar's namespace) or ``app.namespace``; more than one ``.`` is an invalid app id;
* this sidecar's own app id (and namespace): its own app, through the app channel; any other: remote.

Methods are cleaned like Go's ``path.Clean`` (``a/../b`` is ``b``); ``#``, ``?``, ``%``, NUL and control
characters are refused, as daprd does.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import orjson

from building_blocks.errors import InvocationFailed
from building_blocks.invocation.endpoints import HttpEndpoint

__all__ = ("Target", "TargetKind", "normalize_method", "parse_target", "same_namespace")

_FORBIDDEN = frozenset("#?%\x00")


class TargetKind(StrEnum):
    LOCAL = "local"
    REMOTE = "remote"
    EXTERNAL = "external"


@dataclass(frozen=True, slots=True)
class Target:
    raw: str
    kind: TargetKind
    app_id: str
    namespace: str = ""
    base_url: str = ""
    headers: tuple[tuple[str, str], ...] = ()


def same_namespace(a: str, b: str) -> bool:
    return (a or "default") == (b or "default")


def _digits(port: str) -> bool:
    return not port or (port.isascii() and port.isdigit())


def _url_problem(url: str) -> str:
    """What Go's ``url.Parse`` (which daprd applies to a URL app id) finds wrong with ``url``, or ""."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "net/url: invalid control character in URL"
    authority = url.split("://", 1)[1]
    host = authority[: next((i for i, c in enumerate(authority) if c in "/?#"), len(authority))].rpartition("@")[2]
    if host.startswith("["):
        closing = host.find("]")
        if closing < 0:
            return "missing ']' in host"
        port = host[closing + 1 :]
        if port and not (port.startswith(":") and _digits(port[1:])):
            return f'invalid port "{port}" after host'
        return ""
    _, colon, port = host.rpartition(":")
    if colon and not _digits(port):
        return f'invalid port ":{port}" after host'
    return ""


def parse_target(raw: str, own_app_id: str, own_namespace: str, endpoints: Mapping[str, HttpEndpoint]) -> Target:
    """What ``raw`` names; ``InvocationFailed`` when it can't name anything (an unparsable URL, too many dots)."""
    if raw.startswith(("http://", "https://")):
        if problem := _url_problem(raw):
            raise InvocationFailed(raw, f"parse {orjson.dumps(raw).decode()}: {problem}")
        return Target(raw, TargetKind.EXTERNAL, raw, base_url=raw)
    endpoint = endpoints.get(raw)
    if endpoint is not None:
        return Target(raw, TargetKind.EXTERNAL, raw, base_url=endpoint.base_url, headers=endpoint.headers)
    parts = raw.split(".")
    if len(parts) > 2 or not all(parts):
        raise InvocationFailed(raw, f"invalid app id {raw}")
    app_id, namespace = (parts[0], parts[1]) if len(parts) == 2 else (raw, own_namespace)
    if app_id == own_app_id and same_namespace(namespace, own_namespace):
        return Target(raw, TargetKind.LOCAL, app_id, namespace)
    return Target(raw, TargetKind.REMOTE, app_id, namespace)


def normalize_method(app_id: str, method: str) -> str:
    """The cleaned method (no leading ``/``); ``InvocationFailed`` for forbidden characters."""
    bad = next((c for c in method if c in _FORBIDDEN or ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        quoted = orjson.dumps(method).decode()
        what = "forbidden character" if bad in _FORBIDDEN else "control character"
        raise InvocationFailed(
            app_id, f"rpc error: code = InvalidArgument desc = invalid method: method contains {what}: {quoted}"
        )
    if not method:
        return ""
    cleaned = posixpath.normpath(method)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    cleaned = cleaned.lstrip("/")
    while cleaned.startswith("../"):
        cleaned = cleaned[3:]
    return "" if cleaned in (".", "..") else cleaned
