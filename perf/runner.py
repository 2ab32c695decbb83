"""A whole run: start what the chosen scenarios need, measure each, read the resources, stop everything."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perf import machine
from perf.bench import Bench, Config
from perf.environment import Env, Unavailable
from perf.processes import Processes
from perf.procfs import cpu_seconds, rss_mb
from perf.scenarios import Scenario
from perf.targets import evaluate

__all__ = ("run",)


async def run(config: Config, scenarios: list[Scenario], keep: bool = False) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="layotto-perf-"))
    procs = Processes(workdir)
    env = Env(procs)
    bench = Bench(config, env, steps=sum(s.runs for s in scenarios))
    meta = machine.describe()
    cpu_before = machine.cpu_times()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    results: list[dict[str, Any]] = []
    resources: dict[str, Any] = {}
    failed = False
    own_cpu = 0.0
    try:
        roles = set().union(*(s.roles for s in scenarios)) | {"default"}
        bench.log(f"starting: {', '.join(sorted(roles))} (work folder {workdir})")
        await env.start(roles, bench.log)
        for scenario in scenarios:
            results.append(await _scenario(bench, scenario))
            failed = failed or results[-1]["status"] == "failed"
        resources = _resources(bench)
    finally:
        own_cpu = time.process_time() + sum(cpu_seconds(p.pid) or 0.0 for p in procs.started)
        stopping = time.monotonic()
        procs.stop_all()
        bench.log(f"stopped every process in {time.monotonic() - stopping:.1f} s")
        try:
            await asyncio.wait_for(env.cleanup_redis(), 5)
        except Exception as exc:
            bench.log(f"could not clean up Redis keys: {exc}")
        if keep or failed:
            bench.log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    meta["machine_usage"] = machine.usage(cpu_before, machine.cpu_times(), own_cpu)
    meta.update(
        mode="quick" if config.quick else "full",
        started=started_at,
        wall_seconds=round(time.monotonic() - bench.started, 1),
        config={
            "rate": config.rate,
            "connections": config.connections,
            "duration_s": config.duration,
            "warmup_s": config.warmup,
            "payload_bytes": config.payload,
        },
    )
    report = {"meta": meta, "scenarios": results, "resources": resources}
    report["targets"] = evaluate(report)
    return report


async def _scenario(bench: Bench, scenario: Scenario) -> dict[str, Any]:
    base = {"name": scenario.name, "title": scenario.title, "kind": scenario.kind}
    try:
        outcome = await scenario.run(bench)
    except Unavailable as exc:
        bench.step += scenario.runs
        bench.log(f"{scenario.name}: skipped: {exc}")
        return {**base, "status": "skipped", "reason": str(exc)}
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        bench.log(f"{scenario.name}: FAILED: {exc!r}")
        (bench.env.procs.workdir / f"{scenario.name}.traceback").write_text(traceback.format_exc())
        return {**base, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    return {**base, "status": "ok", **outcome}


def _resources(bench: Bench) -> dict[str, Any]:
    env = bench.env
    sidecars: dict[str, Any] = {}
    for role, process in env.sidecars.items():
        idle = env.idle_rss.get(role)
        final = rss_mb(process.pid) if process.alive else None
        sidecars[role] = {
            "start_to_healthy_s": round(process.healthy_after, 3) if process.healthy_after else None,
            "idle_rss_mb": round(idle, 1) if idle is not None else None,
            "final_rss_mb": round(final, 1) if final is not None else None,
            "rss_growth_mb": round(final - idle, 1) if final is not None and idle is not None else None,
            "load_seconds": round(bench.load_seconds.get(process.pid, 0.0), 1),
        }
    return {"sidecars": sidecars, "not_started": dict(env.failures)}
