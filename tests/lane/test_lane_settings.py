"""Choosing the lane: the hidden ``--http-lane`` flag over ``LAYOTTO_HTTP_LANE``, and the protocol each picks."""

from __future__ import annotations

import pytest

from app.cli import _parser, settings_from
from app.http_server import BoundedHeadProtocol, api_protocol, hop_protocol
from app.invocation.hop_security import HopSecurity
from app.invocation.hop_server import HopApp
from app.lane.api import ApiLane
from app.lane.hop import HopLane
from app.lane.protocol import LaneProtocol
from app.main import create_app
from app.settings import Settings


def test_the_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYOTTO_HTTP_LANE", "protocol")
    assert settings_from(_parser().parse_args(["run"])).http_lane == "protocol"
    assert settings_from(_parser().parse_args(["run", "--http-lane", "asgi"])).http_lane == "asgi"
    monkeypatch.delenv("LAYOTTO_HTTP_LANE")
    assert settings_from(_parser().parse_args(["run"])).http_lane == "asgi"
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "--http-lane", "fast"])


def test_each_lane_serves_with_its_protocol() -> None:
    settings = Settings(app_id="x", read_buffer_size=1000)
    door = create_app(settings)
    hop = HopApp(door.runtime, HopSecurity(b"secret"))
    plain = api_protocol(settings, door)
    assert issubclass(plain, BoundedHeadProtocol) and not issubclass(plain, LaneProtocol)
    assert not issubclass(hop_protocol(settings, hop), LaneProtocol)
    lane = Settings(app_id="x", read_buffer_size=1000, http_lane="protocol")
    api = api_protocol(lane, door)
    assert issubclass(api, LaneProtocol) and isinstance(api.lane, ApiLane) and api.head_limit == 1000 + 4096
    internal = hop_protocol(lane, hop)
    assert issubclass(internal, LaneProtocol) and isinstance(internal.lane, HopLane)
