"""The run's report as text: a header with the machine, one block per scenario, resources, targets."""

from __future__ import annotations

from typing import Any

__all__ = ("render",)

_W = 30  # width of the label column


def _ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _header(report: dict[str, Any]) -> list[str]:
    meta, config = report["meta"], report["meta"]["config"]
    load = ", ".join(f"{v:.2f}" for v in meta.get("load_average_at_start", []))
    usage = meta.get("machine_usage") or {}
    return [
        f"Layotto for Python — benchmark ({meta['mode']}) · {meta['cores']} cores · Python {meta['python']}"
        f" · {meta['loop']} · {meta['platform']}",
        f"machine: load average {load or '?'} at start; during the run all cores were {usage.get('busy_percent')}%"
        f" busy, {usage.get('other_processes_percent')}% by processes outside this run, "
        f"{usage.get('steal_percent')}% stolen by the hypervisor",
        f"load: open loop at {config['rate']:g} rps (latency from each request's scheduled time), "
        f"{config['connections']} connections, {config['payload_bytes']} B payloads, "
        f"{config['duration_s']:g} s per run after {config['warmup_s']:g} s warm-up; "
        f"added = sidecar percentile - baseline percentile, same run",
        "",
    ]


def _run_row(run: dict[str, Any], requested: float | None) -> str:
    lat = run["latency_ms"]
    rate = run.get("achieved_rate")
    flag = "!" if requested and rate is not None and rate < 0.99 * requested else " "
    rate_text = f"{rate:,.0f}{flag}" if rate is not None else "-"
    cpu = run.get("sidecar", {}).get("cpu_per_1k_requests")
    cpu_text = f"{cpu:.3f}" if cpu is not None else ""
    errors = run.get("errors", "")
    return (
        f"  {run['label']:<{_W}}{rate_text:>9} {_ms(lat['p50']):>7} {_ms(lat['p90']):>7} {_ms(lat['p99']):>7}"
        f" {_ms(lat['max']):>8} {errors!s:>6} {cpu_text:>9}"
    )


def _scenario_block(scenario: dict[str, Any], rate: float) -> list[str]:
    lines = [f"{scenario['name']} — {scenario['title']}"]
    if scenario["status"] != "ok":
        return [*lines, f"  {scenario['status']}: {scenario.get('reason', '')}"]
    kind = scenario["kind"]
    requested = rate if kind in ("latency", "e2e") else None
    for run in scenario["runs"]:
        if run["label"] == "delivered to app":
            delivery = run
            lat = delivery["latency_ms"]
            per_s = delivery.get("messages_per_s") or 0
            lines.append(
                f"  {'delivered to app':<{_W}}{per_s:>8,.0f}/s {_ms(lat['p50']):>7} {_ms(lat['p90']):>7}"
                f" {_ms(lat['p99']):>7} {_ms(lat['max']):>8} {delivery['undelivered']:>6}  (undelivered; "
                f"{delivery['delivered']}/{delivery['published']} delivered, {delivery['duplicates']} duplicates)"
            )
        else:
            lines.append(_run_row(run, requested))
    for diff in scenario.get("added", []):
        ratio = f"x{diff['ratio_p90']:.1f} at p90" if diff.get("ratio_p90") else ""
        lines.append(
            f"  {'added vs ' + diff['vs']:<{_W}}{'':>9} {_ms(diff['p50'], True):>7} {_ms(diff['p90'], True):>7}"
            f" {_ms(diff['p99'], True):>7}  {ratio}"
        )
    if "capacity" in scenario:
        cap = scenario["capacity"]
        lines.append(
            f"  burst: published {cap['published_per_s']:,.0f}/s, delivered {cap['delivered_per_s'] or 0:,.0f}/s"
            f" ({cap['delivered']}/{cap['published']}, undelivered {cap['undelivered']})"
        )
    if "ops_per_s" in scenario:
        connections = scenario["runs"][0]["connections"]
        lines.append(f"  → {scenario['ops_per_s']:,.0f} {scenario['unit']} at {connections} conns")
    if scenario.get("ratio") is not None:
        lines.append(f"  → sidecar / bare ASGI = {scenario['ratio']:.2f}")
    lines += [f"  note: {note}" for note in scenario.get("notes", [])]
    return lines


def _resources(report: dict[str, Any]) -> list[str]:
    resources = report.get("resources") or {}
    lines = [
        "RESOURCES (per sidecar process)",
        f"  {'sidecar':<14}{'healthy in':>11}{'idle RSS':>10}{'end RSS':>10}{'growth':>9}{'load':>8}",
    ]
    for role, s in sorted(resources.get("sidecars", {}).items()):

        def num(value: float | None, unit: str) -> str:
            return f"{value:.1f}{unit}" if value is not None else "-"

        lines.append(
            f"  {role:<14}{num(s['start_to_healthy_s'], ' s'):>11}{num(s['idle_rss_mb'], ' MB'):>10}"
            f"{num(s['final_rss_mb'], ' MB'):>10}{num(s['rss_growth_mb'], ' MB'):>9}{num(s['load_seconds'], ' s'):>8}"
        )
    for role, reason in sorted(resources.get("not_started", {}).items()):
        lines.append(f"  {role}: not started: {reason}")
    return lines


def _targets(report: dict[str, Any]) -> list[str]:
    lines = ["TARGETS (issue 6)", f"  {'metric':<42}{'target':>10}{'measured':>11}  result  source"]
    for row in report["targets"]:
        measured = row["measured"]
        text = f"{measured:.2f} {row['unit']}" if measured is not None else "-"
        lines.append(f"  {row['metric']:<42}{row['target']:>10}{text:>11}  {row['status']:<6}  {row['source']}")
    return lines


def _profiles(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for scenario in report["scenarios"]:
        for run in scenario.get("runs", []):
            for profile in run.get("profiles", []):
                if "error" in profile:
                    lines.append(f"PROFILE {scenario['name']} · {run['label']}: {profile['error']}")
                    continue
                head = f"PROFILE {scenario['name']} · {run['label']}: {profile['samples']} samples (py-spy)"
                lines.append(f"{head}, {profile['raw']}")
                lines.append("  by package (self): " + ", ".join(f"{n} {s}%" for n, s in profile["packages"][:10]))
                lines.append("  functions, self:")
                lines += [f"    {s:5.1f}%  {n}" for n, s in profile["self"][:12]]
                lines.append("  functions, inclusive (below the event loop):")
                lines += [f"    {s:5.1f}%  {n}" for n, s in profile["inclusive"][:15]]
    return lines


def render(report: dict[str, Any]) -> str:
    rate = report["meta"]["config"]["rate"]
    lines = _header(report)
    lines.append(
        f"{'scenario / path':<{_W + 2}}{'rate/s':>9} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>8} {'errors':>6}"
        f" {'cpu s/1k':>9}   (ms; rate! = below 99% of requested; cpu = sidecar CPU seconds per 1000 requests)"
    )
    for scenario in report["scenarios"]:
        lines += _scenario_block(scenario, rate)
    lines += ["", *_resources(report), "", *_targets(report)]
    profiles = _profiles(report)
    if profiles:
        lines += ["", *profiles]
    return "\n".join(lines)
