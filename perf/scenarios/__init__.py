"""Every scenario, in the order a run measures them; ``select`` applies ``--scenarios``."""

from __future__ import annotations

import fnmatch

from perf.scenarios import alpha, grpc, invoke, observability, pubsub, state, throughput
from perf.scenarios.common import Scenario

__all__ = ("ALL", "Scenario", "select")

ALL: list[Scenario] = [
    *state.SCENARIOS,
    *pubsub.SCENARIOS,
    *invoke.SCENARIOS,
    *grpc.SCENARIOS,
    *alpha.SCENARIOS,
    *throughput.SCENARIOS,
    *observability.SCENARIOS,
    *pubsub.E2E_SCENARIOS,  # last: a delivery backlog left behind would load every later scenario
]


def select(patterns: str | None) -> list[Scenario]:
    """Scenarios matching any comma-separated name or glob (``state-*,invoke``); all when None."""
    if not patterns:
        return list(ALL)
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [s for s in ALL if any(fnmatch.fnmatch(s.name, p) or s.name.startswith(p) for p in wanted)]
    if not chosen:
        names = ", ".join(s.name for s in ALL)
        raise SystemExit(f"perf: no scenario matches {patterns!r}; known: {names}")
    return chosen
