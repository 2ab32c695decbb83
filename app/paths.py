"""Request paths as Dapr reads them: routed while still percent-encoded, each parameter unescaped once.

daprd cleans the *escaped* path (``path.Clean``, one trailing ``/`` stripped), matches its routes on it and
only then unescapes every route parameter. So ``%2F`` inside a key is part of the key and can never
become a separator: ``/v1.0/state/s/z%2F..%2F..%2Fother%2Fk`` names the key ``z/../../other/k`` of the
store ``s``, never the store ``other``; encoded dots are never cleaned away, and an invoked method cannot
climb out into the sidecar's own API. The front door puts the cleaned, still-encoded path in
``scope["path"]``; the route table (``app.routing``) matches it and unescapes each parameter.

Two different escaped names must never map to one stored name: an escape that is not valid UTF-8 (``%ff``,
``%c0``) would decode to U+FFFD for all of them, so such paths are refused (``MalformedPath``).
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import unquote, unquote_to_bytes

__all__ = ("MalformedPath", "check_escapes", "clean", "unescape")

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class MalformedPath(Exception):
    """A path daprd would refuse before routing: ``plain`` is Go's plain-text escape error, else JSON."""

    def __init__(self, message: str, plain: bool) -> None:
        super().__init__(message)
        self.message = message
        self.plain = plain


def clean(path: str) -> str:
    """Go's ``path.Clean`` of the escaped path, without a trailing ``/`` (``//a/./b/`` is ``/a/b``)."""
    if "//" not in path and "/." not in path and not (path.endswith("/") and path != "/"):
        return path
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned != "." else "/"


def check_escapes(path: str) -> None:
    """``MalformedPath`` for an invalid ``%`` escape or escapes that do not decode to UTF-8."""
    if not path.isascii():  # a server that passed raw bytes through: they would not decode as the client meant
        raise MalformedPath("the path has bytes that are not percent-encoded", plain=False)
    if "%" not in path:
        return
    if bad := _BAD_ESCAPE.search(path):
        raise MalformedPath(f'invalid URL escape "{path[bad.start() : bad.start() + 3]}"', plain=True)
    try:
        unquote_to_bytes(path).decode()
    except UnicodeDecodeError:
        raise MalformedPath(f"the path {path[:200]!r} has percent-escapes that are not UTF-8", plain=False) from None


def unescape(part: str) -> str:
    """One parameter, unescaped once (``+`` stays ``+``); the path was checked by ``check_escapes``."""
    return unquote(part, errors="strict") if "%" in part else part
