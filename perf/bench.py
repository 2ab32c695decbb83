"""One measured run: warm-up, the run itself, the sidecars' CPU and memory around it, a progress line."""

from __future__ import annotations

import fnmatch
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perf import loadgen
from perf.environment import Env
from perf.procfs import cpu_seconds, rss_mb
from perf.profile import Profiler

__all__ = ("Bench", "Config")


@dataclass(frozen=True)
class Config:
    rate: float = 1000.0
    connections: int = 16
    duration: float = 60.0  # seconds per measured run
    warmup: float = 5.0  # seconds of warm-up at the same rate before each measured run
    payload: int = 1024  # bytes
    quick: bool = False
    drain: float = 10.0  # seconds an open-loop run waits for answers after its last scheduled request
    delivery_wait: float = 30.0  # seconds an end-to-end run waits for the last deliveries
    profile: str | None = None  # glob of scenarios whose sidecar runs are sampled with py-spy
    profile_dir: Path = Path("perf/results")


@dataclass
class Bench:
    config: Config
    env: Env
    started: float = field(default_factory=time.monotonic)
    results: dict[str, loadgen.Result] = field(default_factory=dict)  # "<scenario>/<label>" -> result
    step: int = 0
    steps: int = 0
    load_seconds: dict[int, float] = field(default_factory=dict)  # sidecar pid -> seconds it served load

    def log(self, line: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {line}", file=sys.stderr, flush=True)

    async def measure(
        self,
        scenario: str,
        label: str,
        target: loadgen.Target,
        sidecars: Sequence[Any] = (),
        closed: bool = False,
        duration: float | None = None,
        warmup: bool = True,
    ) -> dict[str, Any]:
        """Warm-up, then the measured run (open loop at the rate, or closed loop); a JSON-ready summary."""
        config = self.config
        duration = duration if duration is not None else config.duration
        self.step += 1
        what = "closed loop" if closed else f"{config.rate:g} rps"
        self.log(f"({self.step}/{self.steps}) {scenario} · {label} · {what} for {duration:g}s")

        def progress(done: int, total: int) -> None:
            self.log(f"    … {done}{f'/{total}' if total else ''} requests")

        if warmup and config.warmup > 0:
            if closed:
                await loadgen.closed_loop(target, config.warmup, config.connections)
            else:
                await loadgen.open_loop(target, config.rate, config.warmup, config.connections, config.drain)
        profilers = []
        if config.profile and sidecars and fnmatch.fnmatch(scenario, config.profile):
            for n, process in enumerate(sidecars):
                suffix = f"-{n + 1}" if len(sidecars) > 1 else ""
                profilers.append(Profiler(process.pid, config.profile_dir / f"profile-{scenario}{suffix}.txt"))
                await profilers[-1].start()
        before = [(p.pid, cpu_seconds(p.pid), rss_mb(p.pid)) for p in sidecars]
        if closed:
            result = await loadgen.closed_loop(target, duration, config.connections, progress)
        else:
            result = await loadgen.open_loop(target, config.rate, duration, config.connections, config.drain, progress)
        summary = result.summary()
        if profilers:
            summary["profiles"] = [await p.stop() or {"error": p.error} for p in profilers]
        summary["label"] = label
        summary["via_sidecar"] = bool(sidecars)
        if sidecars:
            cpu = 0.0
            rss_before = rss_after = 0.0
            for pid, cpu0, rss0 in before:
                cpu1, rss1 = cpu_seconds(pid), rss_mb(pid)
                cpu += (cpu1 or 0.0) - (cpu0 or 0.0)
                rss_before += rss0 or 0.0
                rss_after += rss1 or 0.0
            summary["sidecar"] = {
                "processes": len(before),
                "cpu_seconds": round(cpu, 3),
                "cpu_per_1k_requests": round(cpu / result.completed * 1000, 4) if result.completed else None,
                "cores": round(cpu / result.elapsed, 3) if result.elapsed else None,
                "rss_mb_before": round(rss_before, 1),
                "rss_mb_after": round(rss_after, 1),
            }
        self.results[f"{scenario}/{label}"] = result
        for process in sidecars:
            served = result.elapsed + (config.warmup if warmup else 0.0)
            self.load_seconds[process.pid] = self.load_seconds.get(process.pid, 0.0) + served
        lat = summary["latency_ms"]
        errors = f", {result.error_count} errors {dict(result.errors)}" if result.error_count else ""
        self.log(
            f"    → {result.achieved_rate:,.0f}/s  p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f} ms"
            f"{errors}"
        )
        return summary
