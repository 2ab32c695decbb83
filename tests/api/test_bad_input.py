"""Garbage on every state endpoint: always a Dapr error body, never a traceback, and nothing stored changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sidecar import component_yaml, running_sidecar

GARBAGE = [
    b"",
    b"null",
    b"0",
    b'"text"',
    b"[null]",
    b"[[]]",
    b'{"keys": "a"}',
    b'{"keys": [1, 2]}',
    b'{"operations": {}}',
    b'{"operations": [{"operation": "upsert"}]}',
    b'{"operations": [{"operation": "upsert", "request": []}]}',
    b'{"operations": [{"operation": "delete", "request": {"key": 5}}]}',
    b'[{"key": "k", "metadata": {"a": 1}}]',
    b'[{"key": "k", "metadata": []}]',
    b'[{"key": "k", "options": "x"}]',
    b'[{"key": ["k"]}]',
    b'{"filter": {"EQ": []}}',
    b'{"filter": {"AND": [{"EQ": {"a": 1}}]}}',
    b'{"page": {"limit": -1}}',
    b'{"sort": [{"key": ""}]}',
    b"\xff\xfe\x00",
    b"[" * 10000,
]
ENDPOINTS = [
    "/v1.0/state/statestore",
    "/v1.0/state/statestore/bulk",
    "/v1.0/state/statestore/transaction",
    "/v1.0-alpha1/state/statestore/query",
]


@pytest.mark.parametrize("store", ["state.in-memory", "state.sqlite"])
async def test_garbage_never_breaks_the_sidecar_or_the_data(tmp_path: Path, store: str) -> None:
    metadata = {"connectionString": str(tmp_path / "s.db")} if store == "state.sqlite" else {}
    (tmp_path / "s.yaml").write_text(component_yaml("statestore", store, metadata))
    async with running_sidecar(tmp_path) as sidecar:
        await sidecar.client.post("/v1.0/state/statestore", json=[{"key": "k", "value": {"kept": 1}}])
        before = await sidecar.client.get("/v1.0/state/statestore/k")
        for endpoint in ENDPOINTS:
            for body in GARBAGE:
                response = await sidecar.client.post(endpoint, content=body)
                assert response.status_code in (200, 204, 400, 500), (endpoint, body[:40])
                if response.status_code >= 400:
                    error = response.json()
                    assert error["errorCode"].startswith("ERR_") and error["message"], (endpoint, body[:40], error)
                    assert "Traceback" not in response.text and "detail" not in error
        after = await sidecar.client.get("/v1.0/state/statestore/k")
        assert after.content == before.content and after.headers["etag"] == before.headers["etag"]
