"""The state query language (Dapr alpha1): parsing, and evaluation over JSON documents in Python.

Semantics shared by every store that claims ``QUERY_API`` (PostgreSQL translates the same tree to SQL):
* a path like ``person.org`` walks nested objects; a missing path makes every condition false, NEQ included;
* EQ/NEQ/IN compare JSON values (``1 == 1.0``; ``true`` is not ``1``);
* GT/GTE/LT/LTE hold only between two numbers or two strings;
* sort orders by JSON type (null < string < number < boolean < array < object), missing values last
  when ascending and first when descending; ``page.token`` is the offset of the next page.

Dapr bounds nothing, but evaluation costs (rows x clauses), so one query could occupy a sidecar for seconds.
The limits below sit far above any hand-written or generated query (Dapr's own examples nest 2-3 levels and
hold a handful of clauses) and far below what takes long: beyond them the query is refused as
``QueryTooComplex`` (400). A filter is compiled once into closures (``IN`` over scalars is a set lookup),
so evaluating it is linear in its size per row; ``select`` runs the whole evaluation and is meant for a
worker thread when the rows are many.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from building_blocks.errors import InvalidRequest, QueryTooComplex

__all__ = (
    "COMPARISONS",
    "MAX_CLAUSES",
    "MAX_DEPTH",
    "MAX_PATH_PARTS",
    "MAX_SORT_KEYS",
    "Condition",
    "Filter",
    "Junction",
    "Predicate",
    "Query",
    "SortKey",
    "compile_filter",
    "matches",
    "page",
    "parse_query",
    "select",
    "sort_documents",
)

MAX_DEPTH = 32  # nested AND/OR levels (a condition at the top is depth 1)
MAX_CLAUSES = 1000  # conditions and junctions in one filter
MAX_PATH_PARTS = 32  # dotted parts of one field path
MAX_SORT_KEYS = 32

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
    parsed = _FilterParser().parse(raw_filter, 1) if raw_filter else None
    raw_sort = document.get("sort") or []
    if not isinstance(raw_sort, list):
        raise InvalidRequest("query sort must be a list")
    if len(raw_sort) > MAX_SORT_KEYS:
        raise QueryTooComplex(f"query sorts by {len(raw_sort)} keys; at most {MAX_SORT_KEYS} are allowed")
    sort = tuple(_parse_sort(item) for item in raw_sort)
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


class _FilterParser:
    """Parses one filter, counting clauses so that limits are checked before any more work is done."""

    def __init__(self) -> None:
        self.clauses = 0

    def parse(self, node: Any, depth: int) -> Filter:
        if not isinstance(node, dict) or len(node) != 1:
            raise InvalidRequest(f"query filter must be an object with exactly one operator, got {_short(node)}")
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            raise QueryTooComplex(f"query filter has more than {MAX_CLAUSES} clauses")
        ((op, operand),) = node.items()
        if op in _JUNCTIONS:
            if not isinstance(operand, list) or len(operand) < 2:
                raise InvalidRequest(f"{op} filter must hold a list of at least two filters")
            if depth >= MAX_DEPTH:
                raise QueryTooComplex(f"query filter nests AND/OR deeper than {MAX_DEPTH} levels")
            return Junction(op, tuple(self.parse(item, depth + 1) for item in operand))
        if op not in COMPARISONS:
            raise InvalidRequest(f"unsupported query filter operator {_short(op)}")
        if not isinstance(operand, dict) or len(operand) != 1:
            raise InvalidRequest(f"{op} filter must be an object with exactly one field")
        ((path, value),) = operand.items()
        if op == "IN" and not isinstance(value, list):
            raise InvalidRequest("IN filter value must be a list")
        return Condition(op, _path(path), value)


def _short(value: Any) -> str:
    """``repr`` cut to a readable length: an error message must not echo a 4 MiB body."""
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _parse_sort(item: Any) -> SortKey:
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        raise InvalidRequest(f"query sort item must be an object with a key, got {_short(item)}")
    order = str(item.get("order", "ASC")).upper()
    if order not in ("ASC", "DESC"):
        raise InvalidRequest(f"query sort order must be ASC or DESC, got {_short(order)}")
    return SortKey(_path(item["key"]), order == "DESC")


def _path(dotted: str) -> tuple[str, ...]:
    parts = tuple(dotted.split("."))
    if not dotted or "" in parts:
        raise InvalidRequest(f"invalid query field {_short(dotted)}")
    if len(parts) > MAX_PATH_PARTS:
        raise QueryTooComplex(f"query field {_short(dotted)} has more than {MAX_PATH_PARTS} parts")
    return parts


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


Predicate = Callable[[Any], bool]


def matches(node: Filter | None, document: Any) -> bool:
    """Whether a decoded JSON document satisfies the filter (None matches everything)."""
    return compile_filter(node)(document)


def compile_filter(node: Filter | None) -> Predicate:
    """The filter as a function of a decoded JSON document; compile once, call per row."""
    if node is None:
        return lambda document: True
    if isinstance(node, Junction):
        items = tuple(compile_filter(item) for item in node.items)
        if node.op == "AND":
            return lambda document: all(item(document) for item in items)
        return lambda document: any(item(document) for item in items)
    path, wanted = node.path, node.value
    test = _IN(wanted) if node.op == "IN" else _COMPARE[node.op]
    return lambda document: (found := _lookup(document, path)) is not _MISSING and test(found, wanted)


def _hashable(value: Any) -> tuple[int, Any] | None:
    """A key equal for exactly the scalars ``_equal`` calls equal (``1`` and ``1.0``, not ``true``)."""
    kind = _kind(value)
    return (kind, value) if kind < 4 else None


class _IN:
    """``IN``: a set lookup for scalar candidates, a scan only over the arrays and objects among them."""

    __slots__ = ("_others", "_scalars")

    def __init__(self, candidates: list[Any]) -> None:
        self._scalars = {key for key in map(_hashable, candidates) if key is not None}
        self._others = [item for item in candidates if _kind(item) >= 4]

    def __call__(self, found: Any, _: Any) -> bool:
        key = _hashable(found)
        if key is not None:
            return key in self._scalars
        return any(_equal(found, item) for item in self._others)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": _equal,
    "NEQ": lambda found, wanted: not _equal(found, wanted),
    "GT": lambda found, wanted: _ordered(found, wanted) and found > wanted,
    "GTE": lambda found, wanted: _ordered(found, wanted) and found >= wanted,
    "LT": lambda found, wanted: _ordered(found, wanted) and found < wanted,
    "LTE": lambda found, wanted: _ordered(found, wanted) and found <= wanted,
}


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


def select(query: Query, rows: Iterable[tuple[T, bytes | str]]) -> tuple[list[T], str]:
    """One page of the ``(item, JSON text)`` rows that match, in order, and the next page's token.

    Rows whose text is not JSON are skipped. Pure Python over every row: call it on a worker thread when
    the rows may be many.
    """
    predicate = compile_filter(query.filter)
    candidates = []
    for item, text in rows:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if predicate(document):
            candidates.append((item, document))
    ordered = sort_documents(candidates, query.sort) if query.sort else [item for item, _ in candidates]
    return page(ordered, query)
