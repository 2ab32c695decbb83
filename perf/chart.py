"""A PNG of the latency percentiles: one panel per scenario, p50/p90/p99 bars per path (log scale)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ("draw",)

_PERCENTILES = ("p50", "p90", "p99")


def draw(report: dict[str, Any], path: Path) -> Path | None:
    """Writes the chart; None (and nothing written) when matplotlib is missing or nothing was measured."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = [s for s in report["scenarios"] if s["status"] == "ok" and s["kind"] in ("latency", "e2e")]
    if not panels:
        return None
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.6 * rows), squeeze=False)
    colors = {"p50": "#4c72b0", "p90": "#dd8452", "p99": "#c44e52"}
    for axis, scenario in zip(axes.flat, panels, strict=False):
        runs = scenario["runs"]
        width = 0.8 / len(_PERCENTILES)
        for offset, name in enumerate(_PERCENTILES):
            values = [max(run["latency_ms"][name], 1e-3) for run in runs]
            xs = [i + (offset - 1) * width for i in range(len(runs))]
            bars = axis.bar(xs, values, width, label=name, color=colors[name])
            axis.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=6, rotation=90, padding=2)
        axis.set_yscale("log")
        axis.set_xticks(range(len(runs)), [run["label"] for run in runs], fontsize=7, rotation=12)
        axis.set_title(scenario["title"], fontsize=9)
        axis.set_ylabel("ms (log)", fontsize=8)
        axis.tick_params(axis="y", labelsize=7)
        axis.margins(y=0.25)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    meta = report["meta"]
    config = meta["config"]
    figure.suptitle(
        f"Layotto for Python — latency percentiles ({meta['mode']}: {config['rate']:g} rps, "
        f"{config['connections']} conns, {config['payload_bytes']} B, {config['duration_s']:g} s/run; "
        f"{meta['cores']} cores, Python {meta['python']})",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
