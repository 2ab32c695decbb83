"""Typed component metadata: unknown names warn at start-up, known names and Dapr's aliases don't, and bad
values still fail naming the file, the component and the field."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from app.runtime import Runtime
from app.settings import Settings
from building_blocks._common.metadata import known_names
from building_blocks._common.redis import RedisSettings
from building_blocks.component import Metadata
from building_blocks.errors import SpecError
from building_blocks.pubsub.kafka.component import KafkaPubSub
from building_blocks.pubsub.redis import RedisPubSub
from building_blocks.registry import COMPONENTS, resolve
from building_blocks.state.postgresql import PostgreSQLStateStore
from building_blocks.state.redis import RedisStateStore

LOGGER = "building_blocks._common.metadata"


def spec_file(directory: Path, component_type: str, metadata: dict[str, str]) -> Path:
    items = "".join(f"    - name: {name}\n      value: '{value}'\n" for name, value in metadata.items())
    path = directory / "store.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: dapr.io/v1alpha1
            kind: Component
            metadata:
              name: mystore
            spec:
              type: {component_type}
              version: v1
              metadata:
            """
        )
        + items
    )
    return path


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


async def test_a_misspelt_name_warns_at_start_up_with_file_component_and_suggestion(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = spec_file(tmp_path, "state.sqlite", {"connectionString": str(tmp_path / "s.db"), "tableNmae": "mine"})
    runtime = Runtime(Settings(app_id="app1", resources_paths=(tmp_path,), environ={}))
    with caplog.at_level(logging.WARNING, LOGGER):
        await runtime.prepare()
    await runtime.close()
    (message,) = warnings(caplog)
    assert str(path) in message
    assert "component 'mystore' (state.sqlite)" in message
    assert "unknown metadata 'tableNmae'" in message
    assert "did you mean 'tableName'?" in message


def test_known_names_block_names_and_dapr_aliases_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    meta = {
        "REDISHOST": "localhost:6379",  # names match case-insensitively
        "maxRetries": "2",  # Dapr's alias of redisMaxRetries
        "ttlInSeconds": "5",
        "keyPrefix": "name",  # read by the state block
        "actorStateStore": "true",
    }
    with caplog.at_level(logging.WARNING, LOGGER):
        store = RedisStateStore("s", Metadata(meta, "f.yaml: component 's' (state.redis)"))
        RedisPubSub("p", Metadata({"redisHost": "h", "consumerID": "g", "allowedTopics": "a"}, "p"))
        PostgreSQLStateStore("pg", Metadata({"connectionString": "host=h", "timeoutInSeconds": "3"}, "pg"))
    assert warnings(caplog) == []
    assert store._connection.options["retry"]._retries == 2


def test_an_unknown_name_far_from_any_known_one_warns_without_a_suggestion(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, LOGGER):
        RedisStateStore("s", Metadata({"redisHost": "h", "zzz": "1"}, "f.yaml: component 's' (state.redis)"))
    assert warnings(caplog) == ["f.yaml: component 's' (state.redis): unknown metadata 'zzz' is ignored"]


def test_kafka_accepts_its_pass_through_prefix_and_ignored_names(caplog: pytest.LogCaptureFixture) -> None:
    meta = {"brokers": "b:9092", "authType": "none", "librdkafka.linger.ms": "5", "version": "2.0.0"}
    with caplog.at_level(logging.WARNING, LOGGER):
        KafkaPubSub("k", Metadata({**meta, "consumerGroupp": "g"}, "k.yaml: component 'k' (pubsub.kafka)"))
    (message,) = warnings(caplog)
    assert "unknown metadata 'consumerGroupp'" in message
    assert "did you mean 'consumerGroup'?" in message


def test_a_bad_value_names_file_component_and_field() -> None:
    where = "f.yaml: component 's' (state.redis)"
    with pytest.raises(SpecError, match=r"^f\.yaml: component 's' \(state\.redis\): metadata 'redisDB' must be an"):
        RedisStateStore("s", Metadata({"redisHost": "h", "redisDB": "one"}, where))
    with pytest.raises(SpecError, match=r"metadata 'maxRetries' must be an integer"):
        RedisStateStore("s", Metadata({"redisHost": "h", "maxRetries": "x"}, where))
    with pytest.raises(SpecError, match=r"^f\.yaml: component 's' \(state\.redis\): metadata 'redisHost' is required"):
        RedisStateStore("s", Metadata({}, where))


def test_the_primary_name_wins_over_its_alias() -> None:
    store = RedisStateStore("s", Metadata({"redisHost": "h", "redisMaxRetries": "7", "maxRetries": "1"}, ""))
    assert store._connection.options["retry"]._retries == 7
    assert {"redisHost", "redisMaxRetries", "maxRetries", "poolTimeout"} <= set(known_names(RedisSettings))


MINIMAL = {
    "redis": {"redisHost": "localhost"},
    "postgresql": {"connectionString": "host=localhost"},
    "configuration.postgresql": {"connectionString": "host=localhost", "table": "t"},
    "sqlite": {"connectionString": ":memory:"},
    "kafka": {"brokers": "localhost:9092", "authType": "none"},
    "local.file": {"secretsFile": "secrets.json"},
    "snowflake": {"workerId": "1"},
}


@pytest.mark.parametrize("component_type", sorted(COMPONENTS))
def test_every_component_warns_about_a_name_it_does_not_read(
    component_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    cls = resolve(component_type, COMPONENTS[component_type].versions[0])
    minimal = MINIMAL.get(component_type) or MINIMAL.get(component_type.split(".", 1)[1], {})
    meta = {**minimal, "bogusName": "1"}
    with caplog.at_level(logging.WARNING, LOGGER):
        cls("c", Metadata(meta, f"f.yaml: component 'c' ({component_type})"))
    assert warnings(caplog) == [f"f.yaml: component 'c' ({component_type}): unknown metadata 'bogusName' is ignored"]
