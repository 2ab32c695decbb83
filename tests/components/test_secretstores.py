"""The local secret stores: nesting, multi-valued secrets, environment prefixes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from building_blocks.component import Metadata
from building_blocks.errors import ComponentError, NotFoundInStore, SpecError
from building_blocks.secretstores.local_env import LocalEnvSecretStore
from building_blocks.secretstores.local_file import LocalFileSecretStore

DOCUMENT = {"db": {"password": "pw", "tls": {"cert": "C"}}, "token": "abc", "port": 5432}


async def file_store(tmp_path: Path, **metadata: str) -> LocalFileSecretStore:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(DOCUMENT))
    store = LocalFileSecretStore("s", Metadata({"secretsFile": str(path), **metadata}, "test"))
    await store.init()
    return store


async def test_nested_keys_are_flattened_with_the_separator(tmp_path: Path) -> None:
    store = await file_store(tmp_path)
    assert await store.get_secret("db:tls:cert", {}) == {"db:tls:cert": "C"}
    assert await store.get_secret("port", {}) == {"port": "5432"}
    assert set(await store.bulk_get_secret({})) == {"db:password", "db:tls:cert", "token", "port"}
    with pytest.raises(NotFoundInStore):
        await store.get_secret("db", {})
    dotted = await file_store(tmp_path, nestedSeparator=".")
    assert await dotted.get_secret("db.password", {}) == {"db.password": "pw"}


async def test_multi_valued_secrets(tmp_path: Path) -> None:
    store = await file_store(tmp_path, multiValued="true")
    assert await store.get_secret("db", {}) == {"password": "pw", "tls:cert": "C"}
    assert await store.get_secret("token", {}) == {"token": "abc"}
    assert [str(f) for f in store.features] == ["MULTIPLE_KEY_VALUES_PER_SECRET"]


async def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="secretsFile"):
        LocalFileSecretStore("s", Metadata({}, "test"))
    missing = LocalFileSecretStore("s", Metadata({"secretsFile": str(tmp_path / "nope.json")}, "test"))
    with pytest.raises(ComponentError):
        await missing.init()


async def test_environment_store_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYAPP_DB_PASSWORD", "pw")
    monkeypatch.setenv("OTHER", "x")
    store = LocalEnvSecretStore("env", Metadata({"prefix": "myapp_"}, "test"))
    assert await store.get_secret("DB_PASSWORD", {}) == {"DB_PASSWORD": "pw"}
    assert await store.bulk_get_secret({}) == {"DB_PASSWORD": {"DB_PASSWORD": "pw"}}
    with pytest.raises(NotFoundInStore):
        await store.get_secret("OTHER", {})
    plain = LocalEnvSecretStore("env", Metadata({}, "test"))
    assert await plain.get_secret("OTHER", {}) == {"OTHER": "x"}
