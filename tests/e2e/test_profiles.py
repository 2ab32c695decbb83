"""The example profiles in component_specs/ and docker-compose.yml stay loadable and consistent."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.runtime import Runtime
from app.settings import Settings
from tests.services import require_postgres, require_redis

ROOT = Path(__file__).resolve().parents[2]


def test_compose_sidecars_point_at_existing_profiles() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    sidecars = {name: s for name, s in compose["services"].items() if "APP_ID" in s.get("environment", {})}
    assert sidecars
    for service in sidecars.values():
        mounts = dict(reversed(v.split(":")[:2]) for v in service["volumes"] if v.startswith("./"))
        paths = [arg.split("=", 1)[1] for arg in service["command"] if arg.startswith("--resources-path=")]
        assert paths
        for path in paths:
            target = next(t for t in mounts if path.startswith(t + "/"))
            assert (ROOT / mounts[target] / path.removeprefix(target + "/")).is_dir(), path
        assert set(service["depends_on"]) <= set(compose["services"])


async def _serves_state(profile: str, environ: dict[str, str]) -> None:
    runtime = Runtime(
        Settings(app_id="profile-test", resources_paths=(ROOT / "component_specs" / profile,), environ=environ)
    )
    await runtime.start()
    try:
        await runtime.wait_settled()  # ready or failed: a failed start-up says why instead of waiting forever
        assert not runtime.failure, runtime.failure
        assert "statestore" in runtime.state.components
    finally:
        await runtime.close()


async def test_redis_profile_loads_against_the_real_server() -> None:
    await _serves_state("redis", {"REDIS_HOST": require_redis()})


async def test_postgresql_profile_loads_against_the_real_server() -> None:
    await _serves_state("postgresql", {"POSTGRES_CONNECTION_STRING": require_postgres()})
