"""State query bounds: a filter beyond the nesting, clause, path or sort limits is a client's mistake (400),
and filters within them keep their meaning (``IN`` compiled to a set lookup included)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from building_blocks.state.query import MAX_CLAUSES, MAX_DEPTH, MAX_PATH_PARTS, MAX_SORT_KEYS
from tests.sidecar import Sidecar, component_yaml, running_sidecar

QUERY = "/v1.0-alpha1/state/statestore/query"
CONDITION = {"EQ": {"n": 1}}


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
    async with running_sidecar(tmp_path) as running:
        documents = [{"n": 1}, {"n": 1.0}, {"n": True}, {"n": "1"}, {"n": [1]}, {"n": {"a": 1}}, {"m": 1}]
        body = [{"key": str(i), "value": document} for i, document in enumerate(documents)]
        assert (await running.client.post("/v1.0/state/statestore", json=body)).status_code == 204
        yield running


def nested(depth: int) -> dict[str, Any]:
    """A filter whose AND/OR nesting is ``depth`` levels deep (a bare condition is depth 1)."""
    node: dict[str, Any] = CONDITION
    for level in range(depth - 1):
        node = {"AND" if level % 2 else "OR": [CONDITION, node]}
    return node


async def query(sidecar: Sidecar, body: dict[str, Any]) -> Any:
    return await sidecar.client.post(QUERY, content=orjson.dumps(body))


async def keys(sidecar: Sidecar, body: dict[str, Any]) -> list[str]:
    response = await query(sidecar, body)
    assert response.status_code in (200, 204), response.text
    return sorted(r["key"] for r in response.json()["results"]) if response.status_code == 200 else []


def assert_refused(response: Any, words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert words in body["message"]


async def test_filters_up_to_the_limits_are_answered(sidecar: Sidecar) -> None:
    assert await keys(sidecar, {"filter": nested(MAX_DEPTH)}) == ["0", "1"]
    flat = {"OR": [CONDITION] * (MAX_CLAUSES - 1)}  # the junction counts as one clause
    assert await keys(sidecar, {"filter": flat}) == ["0", "1"]
    long_path = ".".join(["n"] + ["x"] * (MAX_PATH_PARTS - 1))
    assert await keys(sidecar, {"filter": {"EQ": {long_path: 1}}}) == []
    sort = [{"key": "n"}] * MAX_SORT_KEYS
    assert await keys(sidecar, {"filter": CONDITION, "sort": sort}) == ["0", "1"]


async def test_filters_beyond_the_limits_are_400_with_the_limit_named(sidecar: Sidecar) -> None:
    assert_refused(await query(sidecar, {"filter": nested(MAX_DEPTH + 1)}), f"deeper than {MAX_DEPTH} levels")
    flat = {"OR": [CONDITION] * MAX_CLAUSES}
    assert_refused(await query(sidecar, {"filter": flat}), f"more than {MAX_CLAUSES} clauses")
    long_path = ".".join(["n"] * (MAX_PATH_PARTS + 1))
    assert_refused(await query(sidecar, {"filter": {"EQ": {long_path: 1}}}), f"more than {MAX_PATH_PARTS} parts")
    sort = [{"key": "n"}] * (MAX_SORT_KEYS + 1)
    assert_refused(await query(sidecar, {"filter": CONDITION, "sort": sort}), f"at most {MAX_SORT_KEYS}")


async def test_the_issue_query_of_300_levels_is_refused_with_a_short_message(sidecar: Sidecar) -> None:
    condition = orjson.dumps(CONDITION).decode()
    text = '{"filter": ' + f'{{"AND": [{condition}, ' * 300 + condition + "]}" * 300 + "}"  # too deep for dumps
    response = await sidecar.client.post(QUERY, content=text)
    assert_refused(response, "deeper than")
    assert len(response.text) < 500


async def test_other_malformed_queries_are_400_err_state_query(sidecar: Sidecar) -> None:
    response = await query(sidecar, {"filter": {"XOR": [CONDITION, CONDITION]}})
    assert response.status_code == 400  # daprd: 500; the client's mistake
    assert response.json()["errorCode"] == "ERR_STATE_QUERY"


async def test_in_keeps_json_equality_for_scalars_arrays_and_objects(sidecar: Sidecar) -> None:
    assert await keys(sidecar, {"filter": {"IN": {"n": [1]}}}) == ["0", "1"]  # 1 == 1.0, true is not 1
    assert await keys(sidecar, {"filter": {"IN": {"n": [True, "1"]}}}) == ["2", "3"]
    assert await keys(sidecar, {"filter": {"IN": {"n": [[1], {"a": 1.0}]}}}) == ["4", "5"]
    many = {"IN": {"n": [f"v{i}" for i in range(100_000)] + [1]}}
    assert await keys(sidecar, {"filter": many}) == ["0", "1"]
