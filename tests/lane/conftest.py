"""One sidecar app served twice, on the protocol lane and on the ASGI lane, with the claims the lane made."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.lane.api import ApiLane
from app.lane.cycle import LaneCycle
from app.main import create_app
from app.middleware import FrontDoor
from app.settings import Settings
from tests.lane.wire import served
from tests.sidecar import component_yaml

TOKEN = "s3cret-token"


@dataclass
class Pair:
    """One sidecar app served twice: on the protocol lane and on the ASGI lane; ``claimed`` counts claims."""

    app: FrontDoor
    lane_port: int
    asgi_port: int
    claimed: list[str]


@pytest.fixture
async def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Pair]:
    (tmp_path / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
    (tmp_path / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.in-memory"))
    settings = Settings(
        app_id="laneapp", resources_paths=(tmp_path,), api_token=TOKEN, max_body_size=4096, metrics_port=0
    )
    app = create_app(settings)
    claimed: list[str] = []
    claim = ApiLane.claim

    def spying(self: ApiLane, *args: object) -> LaneCycle | None:
        cycle = claim(self, *args)  # type: ignore[arg-type]
        if cycle is not None:
            claimed.append(cycle.scope["path"])
        return cycle

    monkeypatch.setattr(ApiLane, "claim", spying)
    async with app.lifespan():
        await app.runtime.wait_ready()
        asgi, lane = (dataclasses.replace(settings, http_lane=name) for name in ("asgi", "protocol"))
        async with served(app, asgi) as asgi_port, served(app, lane) as lane_port:
            yield Pair(app, lane_port, asgi_port, claimed)
