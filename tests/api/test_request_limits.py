"""``--max-body-size`` holds for chunked bodies on every route that reads one: 413, never a 500."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.settings import DEFAULT_RESOURCES_PATH
from tests.sidecar import running_sidecar

LIMIT = 1000
BODY_ROUTES = [
    ("POST", "/v1.0/state/statestore"),
    ("PUT", "/v1.0/state/statestore"),
    ("POST", "/v1.0/state/statestore/bulk"),
    ("PUT", "/v1.0/state/statestore/bulk"),
    ("POST", "/v1.0/state/statestore/transaction"),
    ("PUT", "/v1.0/state/statestore/transaction"),
    ("POST", "/v1.0-alpha1/state/statestore/query"),
    ("PUT", "/v1.0-alpha1/state/statestore/query"),
    ("POST", "/v1.0/publish/pubsub/topic"),
    ("POST", "/v1.0-alpha1/publish/bulk/pubsub/topic"),
    ("POST", "/v1.0/publish/bulk/pubsub/topic"),
    ("POST", "/v1.0-alpha1/lock/lockstore"),
    ("POST", "/v1.0-alpha1/unlock/lockstore"),
    ("POST", "/v1.0-alpha1/lock/lockstore/renew"),
    ("POST", "/v1.0-alpha1/sequencer/sequencer"),
    ("POST", "/v1.0-alpha1/configuration/configstore"),
    ("PUT", "/v1.0/metadata/attribute"),
]


async def _chunks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // 100):
        yield b"[" + b" " * 98 + b"]"


@pytest.fixture
def resources(tmp_path: Path) -> Path:
    folder = tmp_path / "resources"
    shutil.copytree(DEFAULT_RESOURCES_PATH, folder, ignore=shutil.ignore_patterns("redis", "postgresql"))
    for spec in folder.glob("*.yaml"):  # the embedded default, on files of this test
        spec.write_text(spec.read_text().replace("~/.layotto/data", str(tmp_path)))
    return folder


async def test_chunked_bodies_over_the_limit_answer_413_on_every_route(resources: Path) -> None:
    async with running_sidecar(resources, max_body_size=LIMIT) as sidecar:
        names = {c["name"] for c in (await sidecar.client.get("/v1.0/metadata")).json()["components"]}
        assert {"statestore", "pubsub", "lockstore", "sequencer", "configstore"} <= names, names
        for method, path in BODY_ROUTES:
            answer = await sidecar.client.request(method, path, content=_chunks(LIMIT * 3))
            assert answer.status_code == 413, (method, path, answer.text)
            assert answer.json()["errorCode"] == "ERR_BODY_READ", (method, path)
            assert str(LIMIT) in answer.json()["message"]
        assert (await sidecar.client.get("/v1.0/healthz")).status_code == 204
