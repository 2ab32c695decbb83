"""Governance that is not configured costs nothing on the hot paths: the front door keeps the route table it
was given, no block has a resiliency layer, the app channel has no concurrency limit; and a policy for one
component puts a layer on that component's block only. (``perf/governance_cost.py`` measures the same.)"""

from __future__ import annotations

from pathlib import Path

from app.main import create_app
from app.settings import Settings
from building_blocks.resiliency_layer import ComponentResiliency
from tests.sidecar import component_yaml

POLICY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r}
spec:
  policies: {timeouts: {quick: 1s}}
  targets: {components: {lockstore: {outbound: {timeout: quick}}}}
"""


def _resources(tmp_path: Path, policy: bool) -> Path:
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
    (tmp_path / "lock.yaml").write_text(component_yaml("lockstore", "lock.in-memory"))
    if policy:
        (tmp_path / "resiliency.yaml").write_text(POLICY)
    return tmp_path


async def test_nothing_configured_nothing_added(tmp_path: Path) -> None:
    app = create_app(Settings(app_id="plain", resources_paths=(_resources(tmp_path, False),), enable_metrics=False))
    table = app.routes
    async with app.lifespan():
        assert app.routes is table
        core = app.runtime.core
        assert all(not block.layers for block in core.blocks.values())
        assert not core.secrets.scopes and not core.middleware


async def test_a_policy_for_one_component_layers_its_block_only(tmp_path: Path) -> None:
    app = create_app(Settings(app_id="one", resources_paths=(_resources(tmp_path, True),), enable_metrics=False))
    async with app.lifespan():
        core = app.runtime.core
        layered = {name for name, block in core.blocks.items() if block.layers}
        assert layered == {"lock"}
        (layer,) = core.lock.layers
        assert isinstance(layer, ComponentResiliency) and set(layer.runners) == {"lockstore"}
