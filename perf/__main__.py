"""``perf/run [--quick] [--rate 1000] [--connections 16] [--scenarios 'state-*,invoke'] ...``

Starts what the chosen scenarios need (sidecars, the bare ASGI baseline, the target and subscriber apps, a
Kafka-protocol broker), measures each scenario against its baselines in the same run, prints a table with the
targets of issue 6, and writes ``perf/results/latest.json`` and ``perf/results/latest.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from perf.bench import Config
from perf.chart import draw
from perf.report import render
from perf.runner import run
from perf.scenarios import ALL, select

RESULTS = Path(__file__).resolve().parent / "results"
QUICK = {"duration": 1.0, "warmup": 0.2, "drain": 1.5, "delivery_wait": 2.0}
FULL = {"duration": 60.0, "warmup": 5.0, "drain": 10.0, "delivery_wait": 30.0}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perf/run",
        description="Benchmarks of the sidecar against baselines measured in the same run.",
        epilog="scenarios: " + ", ".join(s.name for s in ALL),
    )
    parser.add_argument("--quick", action="store_true", help="1 s per run: the whole run in under a minute")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second of open-loop runs (1000)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (16)")
    parser.add_argument("--scenarios", help="comma-separated names or globs, e.g. 'state-*,invoke'")
    parser.add_argument("--duration", type=float, help="seconds per measured run (60; --quick: 1)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each run (5; --quick: 0.2)")
    parser.add_argument("--payload", type=int, default=1024, help="payload bytes (1024)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder of latest.json and latest.png")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (process logs, resources)")
    parser.add_argument(
        "--profile",
        metavar="SCENARIO",
        help="sample the sidecar with py-spy during that scenario's sidecar run (glob), e.g. state-get-redis",
    )
    return parser


async def _main(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):  # stop the children on Ctrl-C and SIGTERM (also in background)
        loop.add_signal_handler(signum, task.cancel)
    return await run(config, select(args.scenarios), keep=args.keep)


def main() -> int:
    args = _parser().parse_args()
    defaults = QUICK if args.quick else FULL
    config = Config(
        rate=args.rate,
        connections=args.connections,
        duration=args.duration if args.duration is not None else defaults["duration"],
        warmup=args.warmup if args.warmup is not None else defaults["warmup"],
        payload=args.payload,
        quick=args.quick,
        drain=defaults["drain"],
        delivery_wait=defaults["delivery_wait"],
        profile=args.profile,
        profile_dir=args.output,
    )
    try:
        import uvloop

        runner: Any = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    try:
        with runner:
            report = runner.run(_main(config, args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("perf: interrupted; every started process was stopped", file=sys.stderr)
        return 130
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    chart = draw(report, args.output / "latest.png")
    print(render(report))
    print(f"\nwrote {args.output / 'latest.json'}" + (f" and {chart}" if chart else " (no chart: matplotlib missing)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
