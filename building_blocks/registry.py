"""Component types by their Dapr type string, imported lazily.

``resolve("state.redis", "v1")`` imports ``building_blocks.state.redis`` only then, so a driver is
loaded only when a spec asks for it. Adding a component = one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from building_blocks._common.extras import missing_extra
from building_blocks.component import Component
from building_blocks.errors import SpecError

__all__ = ("COMPONENTS", "ComponentType", "block_of", "resolve")


@dataclass(frozen=True, slots=True)
class ComponentType:
    target: str  # "module:Class"
    versions: tuple[str, ...] = ("v1",)


COMPONENTS: dict[str, ComponentType] = {
    "state.in-memory": ComponentType("building_blocks.state.memory:InMemoryStateStore"),
    "state.sqlite": ComponentType("building_blocks.state.sqlite:SQLiteStateStore"),
    "state.redis": ComponentType("building_blocks.state.redis:RedisStateStore"),
    "state.postgresql": ComponentType("building_blocks.state.postgresql:PostgreSQLStateStore", ("v1", "v2")),
    "pubsub.in-memory": ComponentType("building_blocks.pubsub.memory:InMemoryPubSub"),
    "pubsub.redis": ComponentType("building_blocks.pubsub.redis:RedisPubSub"),
    "pubsub.kafka": ComponentType("building_blocks.pubsub.kafka.component:KafkaPubSub"),
    "secretstores.local.file": ComponentType("building_blocks.secretstores.local_file:LocalFileSecretStore"),
    "secretstores.local.env": ComponentType("building_blocks.secretstores.local_env:LocalEnvSecretStore"),
    "nameresolution.sqlite": ComponentType("building_blocks.nameresolution.sqlite:SQLiteNameResolver"),
    "nameresolution.dns": ComponentType("building_blocks.nameresolution.dns:DNSNameResolver"),
    "nameresolution.kubernetes": ComponentType("building_blocks.nameresolution.dns:DNSNameResolver"),
    "nameresolution.static": ComponentType("building_blocks.nameresolution.static:StaticNameResolver"),
    "lock.in-memory": ComponentType("building_blocks.lock.memory:InMemoryLockStore"),
    "lock.sqlite": ComponentType("building_blocks.lock.sqlite:SQLiteLockStore"),
    "lock.redis": ComponentType("building_blocks.lock.redis:RedisLockStore"),
    "lock.postgresql": ComponentType("building_blocks.lock.postgresql:PostgreSQLLockStore"),
    "sequencer.in-memory": ComponentType("building_blocks.sequencer.memory:InMemorySequencer"),
    "sequencer.sqlite": ComponentType("building_blocks.sequencer.sqlite:SQLiteSequencer"),
    "sequencer.redis": ComponentType("building_blocks.sequencer.redis:RedisSequencer"),
    "sequencer.postgresql": ComponentType("building_blocks.sequencer.postgresql:PostgreSQLSequencer"),
    "sequencer.snowflake": ComponentType("building_blocks.sequencer.snowflake:SnowflakeSequencer"),
    "configuration.in-memory": ComponentType("building_blocks.configuration.memory:InMemoryConfigurationStore"),
    "configuration.sqlite": ComponentType("building_blocks.configuration.sqlite:SQLiteConfigurationStore"),
    "configuration.redis": ComponentType("building_blocks.configuration.redis:RedisConfigurationStore"),
    "configuration.postgresql": ComponentType("building_blocks.configuration.postgresql:PostgreSQLConfigurationStore"),
}


def block_of(component_type: str) -> str:
    """The building block of a type string: ``state.redis`` -> ``state``."""
    return component_type.split(".", 1)[0]


def resolve(component_type: str, version: str = "v1") -> type[Component]:
    """The class implementing ``component_type`` at ``version``; ``SpecError`` with a hint otherwise."""
    key = component_type.strip().lower()
    entry = COMPONENTS.get(key)
    if entry is None:
        import difflib  # only for a did-you-mean: a plain start-up does not load it

        close = difflib.get_close_matches(key, COMPONENTS, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known types: {', '.join(sorted(COMPONENTS))}"
        raise SpecError(f"unknown component type '{component_type}'{hint}")
    version = version or "v1"
    if version not in entry.versions:
        raise SpecError(
            f"component type '{component_type}' has no version '{version}' (known: {', '.join(entry.versions)})"
        )
    module_name, _, class_name = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        needs = missing_extra(exc) or f"needs a missing dependency: {exc}"
        raise SpecError(f"component type '{component_type}' {needs}") from exc
    cls: type[Component] = getattr(module, class_name)
    return cls
