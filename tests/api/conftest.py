"""Every API test that serves a sidecar in-process runs over both lanes: the ASGI app in-process, and the
protocol lane (``app.lane``) on a real socket, whose answers must be the same. (Modules that start sidecar
processes instead run once.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import sidecar

LANES = ("asgi", "protocol")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lane" in metafunc.fixturenames and hasattr(metafunc.module, "running_sidecar"):
        metafunc.parametrize("lane", LANES, indirect=True)


@pytest.fixture(autouse=True)
def lane(request: pytest.FixtureRequest) -> Iterator[str]:
    """The lane ``running_sidecar`` serves on in this test."""
    chosen: str = getattr(request, "param", "asgi")
    sidecar.default_lane = chosen
    try:
        yield chosen
    finally:
        sidecar.default_lane = "asgi"
