"""PostgreSQL-specific behaviour of ``state.postgresql``: Dapr's v1 table layout, ``xmin`` etags, TTLs
and the cleanup task, transactions, the SQL translation of queries, metadata and error translation.
Shared semantics are covered by tests/conformance."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any
from uuid import uuid4

import asyncpg
import orjson
import pytest

from building_blocks.component import Metadata
from building_blocks.errors import ComponentError, ETagInvalid, ETagMismatch, SpecError
from building_blocks.state import query as q
from building_blocks.state.base import (
    Concurrency,
    DeleteRequest,
    Feature,
    GetRequest,
    QueryRequest,
    SetRequest,
    TransactionRequest,
)
from building_blocks.state.postgresql import PostgreSQLStateStore

pytestmark = pytest.mark.postgres

CONNECTION = "host=127.0.0.1 user=postgres port=5432 database=test"
URL = "postgres://postgres@127.0.0.1:5432/test"
TABLE = f"state_{uuid4().hex[:8]}"


def make_store(**metadata: str) -> PostgreSQLStateStore:
    return PostgreSQLStateStore("s", Metadata({"connectionString": CONNECTION, "tableName": TABLE, **metadata}, "test"))


async def connect() -> asyncpg.Connection:
    return await asyncpg.connect(URL)


@pytest.fixture(scope="module", autouse=True)
def drop_tables() -> Iterator[list[str]]:
    """Every table (or schema, as ``schema ...``) a test creates is dropped at the end of the module."""
    dropped = [TABLE]
    yield dropped

    async def drop() -> None:
        conn = await connect()
        try:
            for name in dropped:
                kind, _, name = name.rpartition(" ")
                await conn.execute(f"DROP {kind or 'TABLE'} IF EXISTS {name} CASCADE")
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
async def store() -> AsyncIterator[PostgreSQLStateStore]:
    async with make_store() as s:
        yield s


@pytest.fixture
async def raw(store: PostgreSQLStateStore) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect()
    yield conn
    await conn.close()


@pytest.fixture
def new_key() -> Callable[[], str]:
    prefix = f"test-pg-{uuid4().hex[:8]}||"
    return lambda: f"{prefix}{uuid4().hex}"


async def row(raw: asyncpg.Connection, key: str) -> asyncpg.Record | None:
    return await raw.fetchrow(
        f"SELECT value::text AS value, isbinary, xmin::text AS xmin, expiredate FROM {TABLE} WHERE key = $1", key
    )


async def stored_row(raw: asyncpg.Connection, key: str) -> asyncpg.Record:
    """``row`` of a key that must be there."""
    found = await row(raw, key)
    assert found is not None, key
    return found


async def xmin(raw: asyncpg.Connection, key: str) -> str:
    return str((await stored_row(raw, key))["xmin"])


async def insert_expired(raw: asyncpg.Connection, key: str, value: str = '"old"') -> None:
    await raw.execute(
        f"INSERT INTO {TABLE} (key, value, isbinary, expiredate) VALUES ($1, $2::jsonb, false, now() - interval '1s')",
        key,
        value,
    )


# --- layout and interoperability --------------------------------------------------------------------


async def test_table_has_dapr_v1_layout(store, raw):
    columns = await raw.fetch(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = $1 ORDER BY ordinal_position",
        TABLE,
    )
    assert [tuple(c) for c in columns] == [
        ("key", "text", "NO"),
        ("value", "jsonb", "NO"),
        ("isbinary", "boolean", "NO"),
        ("insertdate", "timestamp with time zone", "NO"),
        ("updatedate", "timestamp with time zone", "YES"),
        ("expiredate", "timestamp with time zone", "YES"),
    ]
    indexes = await raw.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = $1", TABLE)
    definitions = " ".join(i["indexdef"] for i in indexes)
    assert "PRIMARY KEY" in definitions or "(key)" in definitions
    assert "(expiredate)" in definitions


async def test_reads_rows_written_by_dapr(store, raw, new_key):
    text, binary = new_key(), new_key()
    await raw.execute(f"INSERT INTO {TABLE} (key, value, isbinary) VALUES ($1, '{{\"a\":1}}', false)", text)
    encoded = base64.b64encode(b"\x00\xffraw").decode()
    await raw.execute(
        f"INSERT INTO {TABLE} (key, value, isbinary) VALUES ($1, to_jsonb($2::text), true)", binary, encoded
    )
    item = await store.get(GetRequest(text))
    assert item is not None
    assert (item.value, item.etag, item.expires_at) == (b'{"a": 1}', await xmin(raw, text), None)
    item = await store.get(GetRequest(binary))
    assert item is not None and item.value == b"\x00\xffraw"
    await store.set(SetRequest(text, b'"next"', etag=await xmin(raw, text)))
    assert (await stored_row(raw, text))["value"] == '"next"'


async def test_json_is_stored_as_jsonb_and_other_values_as_base64(store, raw, new_key):
    json_key, binary_key, nul_key = new_key(), new_key(), new_key()
    await store.set(SetRequest(json_key, b'{"b": [1, 2.5, null], "a": "x"}'))
    stored = await stored_row(raw, json_key)
    assert (stored["value"], stored["isbinary"]) == ('{"a": "x", "b": [1, 2.5, null]}', False)
    binary, nul = b"\x00\x01 not json \xff", b'"a\\u0000b"'  # the latter: valid JSON that jsonb refuses
    await store.set(SetRequest(binary_key, binary))
    stored = await stored_row(raw, binary_key)
    assert (stored["value"], stored["isbinary"]) == ('"' + base64.b64encode(binary).decode() + '"', True)
    await store.set(SetRequest(nul_key, nul))
    for key, value in [(binary_key, binary), (nul_key, nul)]:
        item = await store.get(GetRequest(key))
        assert item is not None and item.value == value


# --- etags ------------------------------------------------------------------------------------------


async def test_etag_is_the_row_xmin_and_changes_on_every_write(store, raw, new_key):
    key = new_key()
    await store.set(SetRequest(key, b"1"))
    first = await store.get(GetRequest(key))
    assert first is not None and first.etag == await xmin(raw, key)
    await store.set(SetRequest(key, b"2", etag=first.etag))
    second = await store.get(GetRequest(key))
    assert second is not None and second.etag == await xmin(raw, key) != first.etag
    with pytest.raises(ETagMismatch):
        await store.set(SetRequest(key, b"3", etag=first.etag))
    with pytest.raises(ETagMismatch):
        await store.delete(DeleteRequest(key, etag=first.etag))
    await store.delete(DeleteRequest(key, etag=second.etag))
    assert await row(raw, key) is None


@pytest.mark.parametrize("etag", ["abc", "1.5", "-1", "4294967296"])
async def test_non_xid_etag_is_invalid_and_nothing_changes(store, raw, new_key, etag):
    key = new_key()
    await store.set(SetRequest(key, b'"v"'))
    before = await row(raw, key)
    with pytest.raises(ETagInvalid):
        await store.set(SetRequest(key, b'"w"', etag=etag))
    with pytest.raises(ETagInvalid):
        await store.delete(DeleteRequest(key, etag=etag))
    with pytest.raises(ETagInvalid):
        await store.transact(TransactionRequest([SetRequest(new_key(), b"x"), DeleteRequest(key, etag=etag)]))
    assert await row(raw, key) == before


async def test_etag_mismatches(store, raw, new_key):
    key, missing = new_key(), new_key()
    await store.set(SetRequest(key, b'"v"'))
    before = await stored_row(raw, key)
    stale = str(int(before["xmin"]) + 1)
    with pytest.raises(ETagMismatch):
        await store.set(SetRequest(key, b'"w"', etag=stale))
    with pytest.raises(ETagMismatch):
        await store.delete(DeleteRequest(key, etag=stale))
    with pytest.raises(ETagMismatch):
        await store.set(SetRequest(missing, b'"w"', etag=before["xmin"]))
    with pytest.raises(ETagMismatch):
        await store.delete(DeleteRequest(missing, etag=before["xmin"]))
    with pytest.raises(ETagMismatch, match="first-write"):
        await store.set(SetRequest(key, b'"w"', concurrency=Concurrency.FIRST_WRITE))
    await store.delete(DeleteRequest(missing))
    assert await row(raw, key) == before
    assert await row(raw, missing) is None


async def test_first_write_with_matching_etag_succeeds(store, raw, new_key):
    key = new_key()
    await store.set(SetRequest(key, b"1", concurrency=Concurrency.FIRST_WRITE))
    await store.set(SetRequest(key, b"2", etag=await xmin(raw, key), concurrency=Concurrency.FIRST_WRITE))
    assert (await stored_row(raw, key))["value"] == "2"


# --- TTL and cleanup --------------------------------------------------------------------------------


async def test_ttl_sets_expiredate_and_expires_at(store, raw, new_key):
    key = new_key()
    before = time.time()
    await store.set(SetRequest(key, b"1", ttl=100))
    expiredate = (await stored_row(raw, key))["expiredate"]
    assert before + 99 < expiredate.timestamp() <= time.time() + 101
    item = await store.get(GetRequest(key))
    assert item is not None and item.expires_at == pytest.approx(expiredate.timestamp())


@pytest.mark.parametrize("ttl", [None, 0, -1])
async def test_write_without_positive_ttl_clears_expiry(store, raw, new_key, ttl):
    key = new_key()
    await store.set(SetRequest(key, b"1", ttl=100))
    await store.set(SetRequest(key, b"2", ttl=ttl))
    assert (await stored_row(raw, key))["expiredate"] is None
    item = await store.get(GetRequest(key))
    assert item is not None and item.expires_at is None


async def test_expired_rows_are_invisible_and_count_as_absent(store, raw, new_key):
    key, other = new_key(), new_key()
    await insert_expired(raw, key)
    etag = await xmin(raw, key)
    assert await store.get(GetRequest(key)) is None
    assert (await store.bulk_get([GetRequest(key)]))[0].response is None
    prefix = key.split("||")[0] + "||"
    assert (await store.query(QueryRequest(q.Query(None), prefix))).results == []
    with pytest.raises(ETagMismatch):
        await store.set(SetRequest(key, b'"new"', etag=etag))
    with pytest.raises(ETagMismatch):
        await store.delete(DeleteRequest(key, etag=etag))
    await store.set(SetRequest(key, b'"new"', concurrency=Concurrency.FIRST_WRITE))
    item = await store.get(GetRequest(key))
    assert item is not None and (item.value, item.expires_at) == (b'"new"', None)
    await insert_expired(raw, other)
    await store.transact(TransactionRequest([SetRequest(other, b"1", concurrency=Concurrency.FIRST_WRITE)]))
    assert (await stored_row(raw, other))["value"] == "1"


async def test_cleanup_task_deletes_expired_rows(raw, new_key):
    expired, live, lasting = new_key(), new_key(), new_key()
    async with make_store(cleanupInterval="100ms") as s:
        await insert_expired(raw, expired)
        await s.set(SetRequest(live, b"1", ttl=100))
        await s.set(SetRequest(lasting, b"1"))
        deadline = time.monotonic() + 5
        while await row(raw, expired) is not None:
            assert time.monotonic() < deadline, "the expired row was not deleted"
            await asyncio.sleep(0.05)
    assert await row(raw, live) is not None
    assert await row(raw, lasting) is not None


async def test_cleanup_can_be_disabled(raw, new_key):
    key = new_key()
    async with make_store(cleanupInterval="0"):
        await insert_expired(raw, key)
        await asyncio.sleep(0.3)
        assert await row(raw, key) is not None


# --- transactions -----------------------------------------------------------------------------------


async def test_transaction_applies_in_order(store, raw, new_key):
    a, b, c = new_key(), new_key(), new_key()
    await store.set(SetRequest(a, b'"a"'))
    await store.set(SetRequest(c, b'"c"'))
    await store.transact(
        TransactionRequest(
            [
                SetRequest(a, b'"a2"', etag=await xmin(raw, a), ttl=100),
                SetRequest(b, b'"b"', concurrency=Concurrency.FIRST_WRITE),
                SetRequest(b, b'"b2"'),
                DeleteRequest(c, etag=await xmin(raw, c)),
                SetRequest(c, b'"c2"', concurrency=Concurrency.FIRST_WRITE),
            ]
        )
    )
    rows = [await stored_row(raw, key) for key in (a, b, c)]
    assert [r["value"] for r in rows] == ['"a2"', '"b2"', '"c2"']
    assert rows[0]["expiredate"] is not None
    assert len({r["xmin"] for r in rows}) == 1  # one database transaction


async def test_mismatching_transaction_changes_nothing(store, raw, new_key):
    a, b, c = new_key(), new_key(), new_key()
    await store.set(SetRequest(a, b'"a"', ttl=100))
    await store.set(SetRequest(c, b'"c"'))
    before = [await row(raw, a), await row(raw, c)]
    with pytest.raises(ETagMismatch):
        await store.transact(
            TransactionRequest(
                [
                    SetRequest(a, b'"a2"'),
                    SetRequest(b, b'"b"'),
                    DeleteRequest(c),
                    SetRequest(new_key(), b'"x"', etag="3"),  # missing key: mismatch
                ]
            )
        )
    assert [await row(raw, a), await row(raw, c)] == before
    assert await row(raw, b) is None


@pytest.mark.parametrize(
    "second",
    [
        SetRequest("", b'"y"', etag="current"),  # the etag before the transaction: stale after the first set
        DeleteRequest("", etag="current"),
        SetRequest("", b'"y"', concurrency=Concurrency.FIRST_WRITE),
    ],
)
async def test_earlier_operations_count_in_checks(store, raw, new_key, second):
    key = new_key()
    await store.set(SetRequest(key, b'"v"'))
    before = await stored_row(raw, key)
    etag = before["xmin"]
    second = replace(second, key=key, etag=etag if second.etag else None)
    with pytest.raises(ETagMismatch, match="earlier in the transaction"):
        await store.transact(TransactionRequest([SetRequest(key, b'"x"', etag=etag), second]))
    assert await row(raw, key) == before


async def test_delete_then_first_write_in_one_transaction(store, raw, new_key):
    key = new_key()
    await store.set(SetRequest(key, b'"v"'))
    await store.transact(
        TransactionRequest([DeleteRequest(key), SetRequest(key, b'"w"', concurrency=Concurrency.FIRST_WRITE)])
    )
    assert (await stored_row(raw, key))["value"] == '"w"'


async def test_empty_transaction_is_a_no_op(store):
    await store.transact(TransactionRequest([]))


# --- bulk -------------------------------------------------------------------------------------------


async def test_bulk_get_in_request_order(store, raw, new_key):
    a, missing, expired = new_key(), new_key(), new_key()
    await store.set(SetRequest(a, b'"a"', ttl=100))
    await insert_expired(raw, expired)
    items = await store.bulk_get([GetRequest(a), GetRequest(missing), GetRequest(expired), GetRequest(a)])
    assert [i.key for i in items] == [a, missing, expired, a]
    assert items[0].response is not None and items[0].response.value == b'"a"'
    assert items[0].response.etag == await xmin(raw, a) and items[0].response.expires_at is not None
    assert [(i.response, i.error) for i in items[1:3]] == [(None, ""), (None, "")]
    assert items[3] == items[0]
    assert await store.bulk_get([]) == []


# --- query ------------------------------------------------------------------------------------------

DOCUMENTS: list[Any] = [
    {"n": 1, "s": "B"},
    {"n": 2.5, "s": "a"},
    {"n": 1.0, "s": "é"},
    {"n": "10", "s": "b"},
    {"n": "9"},
    {"n": True},
    {"n": None, "s": None},
    {"n": [1]},
    {"n": {"m": 1}},
    {"s": "A"},
    {},
    {"p": {"q": {"r": 3}}, "n": 3},
    {"p": {"q": [1, 2]}},
    {"p": "flat"},
    {"a": [{"b": 1}], "0": {"1": "z"}},
    {"tags": ["x", "y"]},
    5,
    "text",
    [1, 2],
]

QUERIES: list[dict[str, Any]] = [
    {},
    {"filter": {"EQ": {"n": 1}}},
    {"filter": {"EQ": {"n": None}}},
    {"filter": {"EQ": {"n": True}}},
    {"filter": {"EQ": {"n": "9"}}},
    {"filter": {"EQ": {"n": [1]}}},
    {"filter": {"EQ": {"p": {"q": {"r": 3}}}}},
    {"filter": {"NEQ": {"n": 1}}},
    {"filter": {"NEQ": {"s": "a"}}},
    {"filter": {"IN": {"n": [1, "9", None]}}},
    {"filter": {"IN": {"s": []}}},
    {"filter": {"GT": {"n": 1}}},
    {"filter": {"GTE": {"n": 1}}},
    {"filter": {"LT": {"n": "9"}}},
    {"filter": {"LTE": {"n": 2.5}}},
    {"filter": {"GT": {"s": "B"}}},
    {"filter": {"LTE": {"s": "b"}}},
    {"filter": {"GT": {"n": True}}},
    {"filter": {"LT": {"n": None}}},
    {"filter": {"GTE": {"n": [0]}}},
    {"filter": {"EQ": {"p.q.r": 3}}},
    {"filter": {"GT": {"p.q.r": 2}}},
    {"filter": {"EQ": {"p.q": [1, 2]}}},
    {"filter": {"EQ": {"p.q.0": 1}}},  # arrays are not walked
    {"filter": {"EQ": {"a.0.b": 1}}},
    {"filter": {"EQ": {"tags.-1": "y"}}},
    {"filter": {"EQ": {"0.1": "z"}}},  # object keys that look like indexes
    {"filter": {"NEQ": {"n.m": 2}}},
    {"filter": {"AND": [{"GTE": {"n": 1}}, {"LT": {"n": 3}}]}},
    {"filter": {"OR": [{"EQ": {"s": "a"}}, {"EQ": {"n": "9"}}, {"EQ": {"p": "flat"}}]}},
    {
        "filter": {
            "OR": [{"AND": [{"GTE": {"n": 1}}, {"LT": {"n": 3}}]}, {"AND": [{"EQ": {"s": "A"}}, {"NEQ": {"x": 1}}]}]
        }
    },
    {
        "filter": {
            "AND": [{"OR": [{"EQ": {"n": 1}}, {"EQ": {"n": 3}}]}, {"OR": [{"EQ": {"s": "B"}}, {"EQ": {"p.q.r": 3}}]}]
        }
    },
    {"sort": [{"key": "n"}]},
    {"sort": [{"key": "n", "order": "DESC"}]},
    {"sort": [{"key": "s"}]},
    {"sort": [{"key": "s", "order": "DESC"}, {"key": "n"}]},
    {"sort": [{"key": "p.q.r", "order": "DESC"}]},
    {"filter": {"IN": {"n": [1, 2.5, 3, "9"]}}, "sort": [{"key": "n", "order": "DESC"}]},
    {"sort": [{"key": "n"}], "page": {"limit": 4}},
    {"sort": [{"key": "n"}], "page": {"limit": 4, "token": "8"}},
    {"sort": [{"key": "n"}], "page": {"limit": 3, "token": "18"}},
    {"page": {"token": "5"}},
]


@pytest.fixture
async def documents(store, new_key) -> str:
    """DOCUMENTS stored in key order under a fresh prefix (plus rows a query must never return)."""
    prefix = new_key()[:-32]
    for index, document in enumerate(DOCUMENTS):
        await store.set(SetRequest(f"{prefix}{index:02}", orjson.dumps(document)))
    await store.set(SetRequest(f"{prefix}zz-binary", b"\xff not json"))
    await store.set(SetRequest(f"{prefix[:-2]}-other||00", orjson.dumps(DOCUMENTS[0])))
    return prefix


async def run_query(store: PostgreSQLStateStore, prefix: str, body: dict[str, Any]) -> tuple[list[str], str]:
    response = await store.query(QueryRequest(q.parse_query(orjson.dumps(body)), prefix))
    for result in response.results:
        assert orjson.loads(result.value) == DOCUMENTS[int(result.key[-2:])]
    return [r.key.removeprefix(prefix) for r in response.results], response.token


def expected(body: dict[str, Any]) -> tuple[list[str], str]:
    """What query.py's evaluator (the in-memory store's semantics) answers for the same documents."""
    parsed = q.parse_query(orjson.dumps(body))
    candidates = [(f"{i:02}", d) for i, d in enumerate(DOCUMENTS) if q.matches(parsed.filter, d)]
    ordered = q.sort_documents(candidates, parsed.sort) if parsed.sort else [key for key, _ in candidates]
    return q.page(ordered, parsed)


@pytest.mark.parametrize("body", QUERIES, ids=[orjson.dumps(b).decode() for b in QUERIES])
async def test_query_translation_matches_the_python_evaluator(store, documents, body):
    assert await run_query(store, documents, body) == expected(body)


async def test_query_examples(store, documents):
    assert await run_query(store, documents, {"filter": {"GT": {"n": 1}}}) == (["01", "11"], "")
    assert await run_query(store, documents, {"filter": {"GT": {"s": "B"}}}) == (["01", "02", "03"], "")
    assert await run_query(store, documents, {"filter": {"EQ": {"p.q.0": 1}}}) == ([], "")
    keys, _ = await run_query(store, documents, {"sort": [{"key": "n"}]})
    assert keys[:9] == ["06", "03", "04", "00", "02", "01", "11", "05", "07"]  # null, strings, numbers, bool...
    assert keys[-1] == "18" and "08" in keys
    keys, _ = await run_query(store, documents, {"sort": [{"key": "n", "order": "DESC"}]})
    assert keys[0] == "09" and keys[-3:] == ["04", "03", "06"]  # missing first, then reversed


async def test_query_pages_with_tokens(store, documents):
    body: dict[str, Any] = {"sort": [{"key": "s"}], "page": {"limit": 5}}
    pages = []
    while True:
        keys, token = await run_query(store, documents, body)
        pages.append(keys)
        if not token:
            break
        body["page"]["token"] = token
    assert [len(p) for p in pages] == [5, 5, 5, 4]
    assert [key for keys in pages for key in keys] == (await run_query(store, documents, {"sort": [{"key": "s"}]}))[0]


async def test_query_is_restricted_to_the_key_prefix(store, new_key):
    base = new_key()[:-32]
    await store.set(SetRequest(f"{base}p%_||1", b'{"x": 1}'))
    await store.set(SetRequest(f"{base}pxy||2", b'{"x": 1}'))
    response = await store.query(QueryRequest(q.parse_query(b'{"filter": {"EQ": {"x": 1}}}'), f"{base}p%_||"))
    assert [r.key for r in response.results] == [f"{base}p%_||1"]


async def test_query_results_carry_value_and_etag(store, raw, new_key):
    key = new_key()
    await store.set(SetRequest(key, b'{"x":  [1, {"y": true}]}'))
    response = await store.query(QueryRequest(q.parse_query(b"{}"), key))
    assert [(r.key, r.value, r.etag) for r in response.results] == [
        (key, b'{"x": [1, {"y": true}]}', await xmin(raw, key))
    ]


async def test_query_values_are_bound_not_interpolated(store, raw, new_key):
    key = new_key()
    evil = "x'); DROP TABLE " + TABLE + "; --"
    await store.set(SetRequest(key, orjson.dumps({evil: evil})))
    for op in ("EQ", "GT", "IN"):
        value = [evil] if op == "IN" else evil
        body = {"filter": {op: {evil: value}}, "sort": [{"key": evil}]}
        response = await store.query(QueryRequest(q.parse_query(orjson.dumps(body)), key))
        assert [r.key for r in response.results] == ([] if op == "GT" else [key])
    assert await row(raw, key) is not None


# --- concurrency of start-up ------------------------------------------------------------------------


async def test_concurrent_inits_create_the_table_once(drop_tables):
    table = f"state_{uuid4().hex[:8]}"
    drop_tables.append(table)
    stores = [make_store(tableName=table) for _ in range(6)]
    try:
        await asyncio.gather(*(s.init() for s in stores))
        await stores[0].set(SetRequest("k", b"1"))
        for s in stores:
            item = await s.get(GetRequest("k"))
            assert item is not None and item.value == b"1"
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_concurrent_processes_create_the_table(drop_tables):
    table = f"state_{uuid4().hex[:8]}"
    drop_tables.append(table)
    script = (
        "import asyncio\n"
        "from building_blocks.component import Metadata\n"
        "from building_blocks.state.postgresql import PostgreSQLStateStore\n"
        f"m = Metadata({{'connectionString': {CONNECTION!r}, 'tableName': {table!r}}})\n"
        "async def main():\n"
        "    async with PostgreSQLStateStore('s', m) as s:\n"
        "        await s.ping()\n"
        "asyncio.run(main())\n"
    )
    processes = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", script, stderr=asyncio.subprocess.PIPE)
        for _ in range(4)
    ]
    outcomes = await asyncio.gather(*(p.communicate() for p in processes))
    assert [p.returncode for p in processes] == [0] * 4, [err.decode() for _, err in outcomes]


# --- errors, metadata, lifecycle --------------------------------------------------------------------


async def test_closed_port_is_component_error():
    s = PostgreSQLStateStore(
        "s", Metadata({"connectionString": "host=127.0.0.1 port=1 user=postgres", "timeout": "2s"})
    )
    with pytest.raises(ComponentError) as caught:
        await s.init()
    assert isinstance(caught.value.__cause__, OSError | asyncpg.PostgresError | asyncpg.InterfaceError)
    with pytest.raises(ComponentError):
        await s.get(GetRequest("k"))
    with pytest.raises(ComponentError):
        await s.ping()
    await s.close()


async def test_database_errors_are_component_errors(drop_tables):
    table = f"state_{uuid4().hex[:8]}"
    drop_tables.append(table)
    conn = await connect()
    try:
        await conn.execute(f"CREATE TABLE {table} (id int)")  # not the expected layout
    finally:
        await conn.close()
    async with make_store(tableName=table) as s:
        with pytest.raises(ComponentError) as caught:
            await s.get(GetRequest("k"))
        assert isinstance(caught.value.__cause__, asyncpg.PostgresError)
        with pytest.raises(ComponentError):
            await s.set(SetRequest("k", b"1"))


async def test_ping_and_close(store):
    await store.ping()
    await store.close()
    await store.close()
    with pytest.raises(ComponentError):
        await store.ping()


def test_features():
    assert make_store().features == {Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY_API}


def test_connection_string_is_required():
    with pytest.raises(SpecError, match="connectionString"):
        PostgreSQLStateStore("s", Metadata({"tableName": "t"}, "test"))


@pytest.mark.parametrize("name", ["a-b", "x.y.z", "1abc", "t; DROP TABLE x", "t'", 'a"b', ".t", "s."])
def test_unsafe_table_names_are_spec_errors(name):
    with pytest.raises(SpecError, match="tableName"):
        make_store(tableName=name)


@pytest.mark.parametrize(
    ("metadata", "name"),
    [
        ({"maxConns": "many"}, "maxConns"),
        ({"maxConns": "0"}, "maxConns"),
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": "0"}, "timeout"),
        ({"cleanupInterval": "often"}, "cleanupInterval"),
        ({"connectionString": "host=127.0.0.1 port=five"}, "connectionString"),
        ({"connectionString": "not a connection string"}, "connectionString"),
    ],
)
def test_bad_metadata_is_spec_error(metadata, name):
    with pytest.raises(SpecError, match=name):
        make_store(**metadata)


async def test_url_and_quoted_keyword_forms_and_case_insensitive_names(drop_tables, new_key):
    schema = f"s_{uuid4().hex[:8]}"
    drop_tables.append(f"SCHEMA {schema}")
    conn = await connect()
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        keyword = (
            "host = 127.0.0.1 port=5432 user=postgres dbname=test application_name='layotto \\'test\\'' "
            "pool_max_conns=8"
        )
        metadata = {"CONNECTIONSTRING": keyword, "tablename": f"{schema.upper()}.States", "MaxConns": "2"}
        key = new_key()
        async with PostgreSQLStateStore("s", Metadata(metadata, "test")) as s:
            await s.set(SetRequest(key, b"1"))
            names = await conn.fetch("SELECT application_name FROM pg_stat_activity WHERE datname = 'test'")
            assert "layotto 'test'" in {n["application_name"] for n in names}
        assert await conn.fetchval(f"SELECT value::text FROM {schema}.states WHERE key = $1", key) == "1"
        url = f"{URL}?sslmode=disable&connect_timeout=5&pool_max_conns=4"
        async with PostgreSQLStateStore("s", Metadata({"connectionString": url, "tableName": f"{schema}.states"})) as s:
            item = await s.get(GetRequest(key))
            assert item is not None and item.value == b"1"
    finally:
        await conn.close()
