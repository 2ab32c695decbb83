"""Facts about the machine a run is measured on: cores, Python, load, CPU steal (noisy neighbours)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ("cpu_times", "describe", "usage")

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_times() -> list[int] | None:
    """The ``cpu`` line of /proc/stat (user nice system idle iowait irq softirq steal ...), in ticks."""
    try:
        line = Path("/proc/stat").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return [int(v) for v in line.split()[1:]]


def usage(before: list[int] | None, after: list[int] | None, own_cpu_seconds: float) -> dict[str, float] | None:
    """Shares of all cores between two ``cpu_times`` samples: busy, stolen by the hypervisor, and used by
    processes other than this run's (the harness and the processes it started): other people's load."""
    if not before or not after or len(before) < 8:
        return None
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta[:8]) or 1
    busy = total - delta[3] - delta[4] - delta[7]
    others = max(busy - own_cpu_seconds * _TICKS, 0)
    return {
        "busy_percent": round(100 * busy / total, 1),
        "steal_percent": round(100 * delta[7] / total, 1),
        "other_processes_percent": round(100 * others / total, 1),
    }


def describe() -> dict[str, Any]:
    try:
        import uvloop

        loop = f"uvloop {getattr(uvloop, '__version__', '?')}"
    except ImportError:
        loop = "asyncio"
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = []
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(terse=True),
        "loop": loop,
        "load_average_at_start": [float(v) for v in load],
    }
