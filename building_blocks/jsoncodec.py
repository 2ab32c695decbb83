"""JSON as the sidecar reads and writes the app's values: orjson first, the standard library past its limits.

orjson decodes at most 1,024 nested levels and encodes at most 254; daprd (Go's ``encoding/json``) accepts
10,000. A document orjson refuses for its depth alone goes through the standard library's C codec instead,
with the recursion limit raised by ``MAX_DEPTH`` for that call only, so depth never fails a request Dapr
accepts, and the common, shallow case costs exactly what it did.

Errors are ``ValueError``: orjson's or the standard library's ``JSONDecodeError``, ``TooDeep``.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

__all__ = ("MAX_DEPTH", "TooDeep", "dumps", "go_type", "is_json", "loads")

T = TypeVar("T")

#: Nesting accepted on top of what the caller's stack already uses (Go's ``encoding/json`` limit). The C
#: stack holds far deeper documents (tens of thousands of levels on the default 8 MiB stack).
MAX_DEPTH = 10_000
_ORJSON_TOO_DEEP = "depth limit exceeded"
_RECURSION_LIMIT = threading.Lock()  # one raise-and-restore at a time, so the limit always comes back


class TooDeep(ValueError):
    """Nested deeper than ``MAX_DEPTH``; the text is Go's."""

    def __init__(self) -> None:
        super().__init__("exceeded max depth")


def _not_json(constant: str) -> Any:
    raise ValueError(f"invalid character '{constant[0]}' looking for beginning of value")


def _finite(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} is out of range of a double")
    return number


_STRICT = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)
_SYNTAX = json.JSONDecoder(parse_constant=_not_json)  # any number is valid JSON text, whatever its range


def _deep(call: Callable[[Any], T], argument: Any) -> T:
    with _RECURSION_LIMIT:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(limit + MAX_DEPTH)
        try:
            return call(argument)
        except RecursionError:
            raise TooDeep from None
        finally:
            sys.setrecursionlimit(limit)


def loads(data: bytes | str) -> Any:
    """The decoded document. Numbers beyond a double's range are refused (as orjson and Go refuse them); big
    integers beyond orjson's 64 bits come back as floats on the fast path and exact on the deep one."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if exc.msg != _ORJSON_TOO_DEEP:
            raise
    text = data.decode() if isinstance(data, bytes) else data
    return _deep(_STRICT.decode, text)


def _stdlib_dumps(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate the app escaped: keep it escaped
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def dumps(value: Any) -> bytes:
    """Compact JSON of a decoded document (``loads``'s output), however deep, big integers included."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested past 254 levels, or an integer past 64 bits
        return _deep(_stdlib_dumps, value)


def is_json(data: bytes) -> bool:
    """Whether ``data`` is one JSON document in UTF-8 (numbers of any range and any depth up to
    ``MAX_DEPTH``), so it can be embedded as it is (``orjson.Fragment``)."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            _deep(_SYNTAX.decode, data.decode())
        except ValueError:
            return False
    return True


def go_type(value: Any) -> str:
    """The JSON type of a decoded ``value`` in the words of Go's decoder errors (``cannot unmarshal <type>``)."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"
