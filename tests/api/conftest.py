"""Every API test runs over both lanes: the ASGI app in-process, and the protocol lane (``app.lane``) on a
real socket, whose answers must be the same."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import sidecar


@pytest.fixture(autouse=True, params=["asgi", "protocol"])
def lane(request: pytest.FixtureRequest) -> Iterator[str]:
    """The lane ``running_sidecar`` serves on in this test."""
    chosen: str = request.param
    sidecar.default_lane = chosen
    try:
        yield chosen
    finally:
        sidecar.default_lane = "asgi"
