"""Start-up checks of lock and sequencer specs: bad block-level metadata stops the sidecar with a clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.runtime import Runtime
from app.settings import Settings
from building_blocks.errors import SpecError
from tests.sidecar import component_yaml


async def prepare(tmp_path: Path, component_type: str, metadata: dict[str, str]) -> None:
    (tmp_path / "c.yaml").write_text(component_yaml("c", component_type, metadata))
    runtime = Runtime(Settings(app_id="app", resources_paths=(tmp_path,)))
    try:
        await runtime.prepare()
    finally:
        await runtime.close()


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"biggerThan.k": "lots"}, "metadata 'biggerThan.k' must be an integer, got 'lots'"),
        ({"biggerThan.k": "-1"}, "metadata 'biggerThan.k' must be between 0 and"),
        ({"biggerThan.a||b": "1"}, "metadata 'biggerThan.a||b' must name a key without '||'"),
        ({"segmentSize": "0"}, "metadata 'segmentSize' must be at least 1"),
        ({"keyPrefix": "a||b"}, "metadata 'keyPrefix' can't contain '||'"),
    ],
)
async def test_bad_sequencer_metadata(tmp_path: Path, metadata: dict[str, str], problem: str) -> None:
    with pytest.raises(SpecError, match=problem.replace("|", r"\|")) as failure:
        await prepare(tmp_path, "sequencer.in-memory", metadata)
    assert str(failure.value).startswith(f"{tmp_path / 'c.yaml'}: component 'c' (sequencer.in-memory): ")


@pytest.mark.parametrize(
    ("component_type", "metadata", "problem"),
    [
        ("lock.redis", {}, "metadata 'redisHost' is required"),
        ("lock.sqlite", {}, "metadata 'connectionString' is required"),
        ("lock.sqlite", {"connectionString": "x.db", "tableName": "x;drop"}, "metadata 'tableName' must be a plain"),
        ("lock.postgresql", {}, "metadata 'connectionString' is required"),
        ("sequencer.sqlite", {}, "metadata 'connectionString' is required"),
        ("sequencer.postgresql", {"connectionString": "host=x", "tableName": "a.b.c"}, "metadata 'tableName' must be"),
        ("sequencer.redis", {"redisHost": "x", "redisDB": "zero"}, "metadata 'redisDB' must be an integer"),
    ],
)
async def test_bad_component_metadata(
    tmp_path: Path, component_type: str, metadata: dict[str, str], problem: str
) -> None:
    with pytest.raises(SpecError, match=problem):
        await prepare(tmp_path, component_type, metadata)


async def test_floors_and_segment_settings_reach_the_component(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        component_yaml("c", "sequencer.in-memory", {"BiggerThan.Order": "7", "keyPrefix": "none", "segmentStep": "5"})
    )
    runtime = Runtime(Settings(app_id="app", resources_paths=(tmp_path,)))
    await runtime.prepare()
    try:
        assert runtime.sequencer.components["c"].floors == {"sequencer|||Order": 7}
    finally:
        await runtime.close()
