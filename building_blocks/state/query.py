"""The state query language (Dapr alpha1): parsing, and evaluation over JSON documents in Python.

Semantics shared by every store that claims ``QUERY_API`` (PostgreSQL translates the same tree to SQL):
* a path like ``person.org`` walks nested objects; a missing path makes every condition false, NEQ included;
* EQ/NEQ/IN compare JSON values (``1 == 1.0``; ``true`` is not ``1``);
* GT/GTE/LT/LTE hold only between two numbers or two strings;
* sort orders by JSON type (null < string < number < boolean < array < object), missing values last
  when ascending and first when descending; ``page.token`` is the offset of the next page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from building_blocks.errors import InvalidRequest

__all__ = (
    "COMPARISONS",
    "Condition",
    "Filter",
    "Junction",
    "Query",
    "SortKey",
    "matches",
    "page",
    "parse_query",
    "sort_documents",
)

COMPARISONS = ("EQ", "NEQ", "GT", "GTE", "LT", "LTE", "IN")
_JUNCTIONS = ("AND", "OR")
_MISSING = object()
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Condition:
    op: str
    path: tuple[str, ...]
    value: Any


@dataclass(frozen=True, slots=True)
class Junction:
    op: str
    items: tuple[Filter, ...]


Filter = Condition | Junction


@dataclass(frozen=True, slots=True)
class SortKey:
    path: tuple[str, ...]
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    filter: Filter | None
    sort: tuple[SortKey, ...] = ()
    limit: int = 0
    offset: int = 0


def parse_query(body: bytes) -> Query:
    """Parse a query body; raises ``InvalidRequest`` describing the first problem."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"failed to parse JSON query body: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequest("failed to parse JSON query body: query must be a JSON object")
    raw_filter = document.get("filter")
    parsed = _parse_filter(raw_filter) if raw_filter else None
    sort = tuple(_parse_sort(item) for item in document.get("sort") or ())
    raw_page = document.get("page") or {}
    if not isinstance(raw_page, dict):
        raise InvalidRequest("query page must be an object")
    limit = raw_page.get("limit", 0)
    token = raw_page.get("token", "") or "0"
    if not isinstance(limit, int) or limit < 0:
        raise InvalidRequest(f"query page limit must be a non-negative integer, got {limit!r}")
    try:
        offset = int(token)
    except (TypeError, ValueError):
        raise InvalidRequest(f"invalid query page token {token!r}") from None
    return Query(parsed, sort, limit, max(offset, 0))


def _parse_filter(node: Any) -> Filter:
    if not isinstance(node, dict) or len(node) != 1:
        raise InvalidRequest(f"query filter must be an object with exactly one operator, got {node!r}")
    ((op, operand),) = node.items()
    if op in _JUNCTIONS:
        if not isinstance(operand, list) or len(operand) < 2:
            raise InvalidRequest(f"{op} filter must hold a list of at least two filters")
        return Junction(op, tuple(_parse_filter(item) for item in operand))
    if op not in COMPARISONS:
        raise InvalidRequest(f"unsupported query filter operator {op!r}")
    if not isinstance(operand, dict) or len(operand) != 1:
        raise InvalidRequest(f"{op} filter must be an object with exactly one field")
    ((path, value),) = operand.items()
    if op == "IN" and not isinstance(value, list):
        raise InvalidRequest("IN filter value must be a list")
    return Condition(op, _path(path), value)


def _parse_sort(item: Any) -> SortKey:
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        raise InvalidRequest(f"query sort item must be an object with a key, got {item!r}")
    order = str(item.get("order", "ASC")).upper()
    if order not in ("ASC", "DESC"):
        raise InvalidRequest(f"query sort order must be ASC or DESC, got {order!r}")
    return SortKey(_path(item["key"]), order == "DESC")


def _path(dotted: str) -> tuple[str, ...]:
    if not dotted or any(part == "" for part in dotted.split(".")):
        raise InvalidRequest(f"invalid query field {dotted!r}")
    return tuple(dotted.split("."))


def _lookup(document: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(document, dict) or part not in document:
            return _MISSING
        document = document[part]
    return document


def _kind(value: Any) -> int:
    """JSON type rank, PostgreSQL jsonb order."""
    if value is None:
        return 0
    if isinstance(value, str):
        return 1
    if isinstance(value, bool):
        return 3
    if isinstance(value, int | float):
        return 2
    if isinstance(value, list):
        return 4
    return 5


def _equal(left: Any, right: Any) -> bool:
    return _kind(left) == _kind(right) and left == right


def _ordered(left: Any, right: Any) -> bool:
    return _kind(left) == _kind(right) and _kind(left) in (1, 2)


def matches(node: Filter | None, document: Any) -> bool:
    """Whether a decoded JSON document satisfies the filter (None matches everything)."""
    if node is None:
        return True
    if isinstance(node, Junction):
        outcomes = (matches(item, document) for item in node.items)
        return all(outcomes) if node.op == "AND" else any(outcomes)
    found = _lookup(document, node.path)
    if found is _MISSING:
        return False
    wanted = node.value
    match node.op:
        case "EQ":
            return _equal(found, wanted)
        case "NEQ":
            return not _equal(found, wanted)
        case "IN":
            return any(_equal(found, item) for item in wanted)
        case "GT":
            return _ordered(found, wanted) and found > wanted
        case "GTE":
            return _ordered(found, wanted) and found >= wanted
        case "LT":
            return _ordered(found, wanted) and found < wanted
        case _:  # LTE
            return _ordered(found, wanted) and found <= wanted


def _sort_value(value: Any) -> tuple[int, Any]:
    kind = _kind(value)
    if kind in (1, 2, 3):
        return kind, value
    return kind, orjson.dumps(value, option=orjson.OPT_SORT_KEYS) if kind > 3 else 0


def sort_documents(items: Iterable[tuple[T, Any]], keys: Sequence[SortKey]) -> list[T]:
    """Sort ``(item, document)`` pairs by the sort keys; stable, last key applied first."""
    ordered = list(items)
    for key in reversed(keys):
        present = [pair for pair in ordered if _lookup(pair[1], key.path) is not _MISSING]
        missing = [pair for pair in ordered if _lookup(pair[1], key.path) is _MISSING]
        present.sort(key=lambda pair: _sort_value(_lookup(pair[1], key.path)), reverse=key.descending)
        ordered = missing + present if key.descending else present + missing
    return [item for item, _ in ordered]


def page(items: Sequence[T], query: Query) -> tuple[list[T], str]:
    """Slice one page and return it with the token of the next page ("" when it was the last)."""
    if query.limit <= 0:
        return list(items[query.offset :]), ""
    end = query.offset + query.limit
    return list(items[query.offset : end]), (str(end) if end < len(items) else "")
