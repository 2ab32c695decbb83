"""keyPrefix strategies, checked on the keys really stored in Redis (interop with data written by daprd)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from tests.services import require_redis
from tests.sidecar import component_yaml, running_sidecar


@pytest.mark.parametrize(
    ("strategy", "stored"),
    [
        ("", "{app}||{key}"),
        ("appid", "{app}||{key}"),
        ("name", "store||{key}"),
        ("namespace", "prod.{app}||{key}"),
        ("none", "{key}"),
        ("custom-prefix", "custom-prefix||{key}"),
    ],
)
async def test_stored_key(tmp_path: Path, strategy: str, stored: str) -> None:
    host = require_redis()
    metadata = {"redisHost": host} | ({"keyPrefix": strategy} if strategy else {})
    (tmp_path / "s.yaml").write_text(component_yaml("store", "state.redis", metadata))
    key = uuid.uuid4().hex
    async with running_sidecar(tmp_path, namespace="prod") as sidecar:
        await sidecar.client.post("/v1.0/state/store", json=[{"key": key, "value": "v"}])
        client = redis.Redis.from_url(f"redis://{host}")
        try:
            expected = stored.format(app=sidecar.app_id, key=key)
            assert client.hget(expected, "data") == b'"v"'
            bulk = await sidecar.client.post("/v1.0/state/store/bulk", json={"keys": [key]})
            assert bulk.json()[0]["key"] == key
        finally:
            client.delete(expected)
            client.close()
