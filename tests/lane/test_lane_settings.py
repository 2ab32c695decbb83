"""Choosing the lane: the protocol lane by default, the hidden ``--http-lane`` flag over ``LAYOTTO_HTTP_LANE``, and
the protocol each picks."""

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


def test_the_protocol_lane_is_the_default_and_the_flag_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LAYOTTO_HTTP_LANE", raising=False)
    assert Settings().http_lane == "protocol"
    assert settings_from(_parser().parse_args(["run"])).http_lane == "protocol"
    assert settings_from(_parser().parse_args(["run", "--http-lane", "asgi"])).http_lane == "asgi"
    monkeypatch.setenv("LAYOTTO_HTTP_LANE", "asgi")
    assert settings_from(_parser().parse_args(["run"])).http_lane == "asgi"
    assert settings_from(_parser().parse_args(["run", "--http-lane", "protocol"])).http_lane == "protocol"
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "--http-lane", "fast"])


def test_the_flag_is_not_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "--help"])
    shown = capsys.readouterr().out
    assert "--max-body-size" in shown and "--http-lane" not in shown  # not Dapr's flag: the README documents it


def test_each_lane_serves_with_its_protocol() -> None:
    settings = Settings(app_id="x", read_buffer_size=1000, http_lane="asgi")
    door = create_app(settings)
    hop = HopApp(door.runtime, HopSecurity(b"secret"))
    plain = api_protocol(settings, door)
    assert issubclass(plain, BoundedHeadProtocol) and not issubclass(plain, LaneProtocol)
    assert not issubclass(hop_protocol(settings, hop), LaneProtocol)
    lane = Settings(app_id="x", read_buffer_size=1000)
    api = api_protocol(lane, door)
    assert issubclass(api, LaneProtocol) and isinstance(api.lane, ApiLane) and api.head_limit == 1000 + 4096
    internal = hop_protocol(lane, hop)
    assert issubclass(internal, LaneProtocol) and isinstance(internal.lane, HopLane)
