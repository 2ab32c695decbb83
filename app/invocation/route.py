"""Finding the target app id and the method in a request, as daprd's ``findTargetIDAndMethod`` does.

In order: the ``dapr-app-id`` header (the whole path is the method), then HTTP basic auth with user
``dapr-app-id`` (same), then the path ``/v1.0/invoke/<app-id>/method/<method>``.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Iterable
from typing import TypeVar

from starlette.datastructures import Headers

from app.paths import unescape

__all__ = ("find_target",)

_T = TypeVar("_T")
_PREFIX = "/v1.0/invoke/"
_METHOD = "/method/"
#: What a path gives, remembered per path (a pure function of it; bounded, as paths come from clients).
_KEPT = 1024
_methods: dict[str, str] = {}
_targets: dict[str, tuple[str, str]] = {}


def _remember(memo: dict[str, _T], path: str, value: _T) -> _T:
    if len(memo) >= _KEPT:
        memo.clear()
    memo[path] = value
    return value


def _clean(path: str) -> str:
    cleaned = posixpath.normpath("/" + path)
    return "" if cleaned in ("/", "//") else cleaned.lstrip("/")


def _from_basic_auth(authorization: str) -> str:
    if not authorization.startswith("Basic "):
        return ""
    try:
        user, sep, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return password if sep and ":" not in password and user.lower() == "dapr-app-id" else ""


def _header_target(raw: Iterable[tuple[bytes, bytes]]) -> str:
    """The app id a ``dapr-app-id`` header (first) or basic auth names, else ``""``."""
    app_id: bytes | None = None
    authorization: bytes | None = None
    for name, value in raw:
        if name == b"dapr-app-id" and app_id is None:
            app_id = value
        elif name == b"authorization" and authorization is None:
            authorization = value
    if app_id:
        return app_id.decode("latin-1")
    return _from_basic_auth(authorization.decode("latin-1")) if authorization else ""


def find_target(path: str, headers: Headers | Iterable[tuple[bytes, bytes]]) -> tuple[str, str]:
    """``(app id, method)`` for a cleaned, still percent-encoded request path (``app.paths``) and the request's
    headers (ASGI's raw list, or starlette's); app id ``""`` when none is given. The app id and the method
    are unescaped once, after the path was split, so an encoded ``/`` can never move the split."""
    app_id = _header_target(headers.raw if isinstance(headers, Headers) else headers)
    if app_id:
        method = _methods.get(path)
        return app_id, method if method is not None else _remember(_methods, path, _clean(unescape(path)))
    target = _targets.get(path)
    return target if target is not None else _remember(_targets, path, _path_target(path))


def _path_target(path: str) -> tuple[str, str]:
    """The app id and method of the path form (``""``, ``""``: not an invocation path)."""
    if not path.startswith(_PREFIX):
        return "", ""
    rest = path[len(_PREFIX) :]
    index = rest.find(_METHOD)
    if index <= 0:
        return "", ""
    target, method = unescape(rest[:index]), _clean(unescape(rest[index + len(_METHOD) :]))
    for scheme in ("http:/", "https:/"):  # the path cleaning turned "http://" into "http:/"
        if target.startswith(scheme) and not target.startswith(scheme + "/"):
            target = scheme + "/" + target[len(scheme) :]
    return target, method
