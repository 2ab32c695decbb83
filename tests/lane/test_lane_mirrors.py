"""A tripwire for what the protocol lane mirrors instead of calling.

Before it claims a request, the lane repeats the checks the ASGI doors make before they dispatch (the API
token, body limits, path cleaning and escapes, the start-up gate, which observability runs in the door, the
hop's secret and target): a step added to one of these methods and not to ``app/lane`` would be skipped for
every claimed request. This happened twice while the lane was written (access control on the hop, error
codes in the observed door). When one of these hashes changes, read the change, make ``app/lane/api.py`` or
``app/lane/hop.py`` decline or do the same, and then update the hash here.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from app.invocation.hop_server import HopApp
from app.middleware import FrontDoor
from app.observability.front import ObservedFrontDoor

MIRRORED: dict[str, tuple[Callable[..., Any], str]] = {
    "FrontDoor.__call__ (app/lane/api.py: ApiLane.claim)": (FrontDoor.__call__, "9c20c8f2e6c0d9a8"),
    "ObservedFrontDoor.__call__ (app/lane/api.py: claim, _measured)": (ObservedFrontDoor.__call__, "b4d360dbc0377881"),
    "HopApp.__call__ (app/lane/hop.py: HopLane.claim)": (HopApp.__call__, "a7f6f5da785b28d6"),
}


@pytest.mark.parametrize("name", list(MIRRORED))
def test_what_the_lane_mirrors_is_unchanged(name: str) -> None:
    function, expected = MIRRORED[name]
    digest = hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]
    assert digest == expected, f"{name} changed: bring the protocol lane in line, then set its hash to {digest}"
