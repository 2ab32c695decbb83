"""What metrics and tracing add to one state get, measured in-process (``python -m perf.observability_cost``).

The open-loop runs of ``perf`` measure whole sidecars over loopback, where a busy machine moves p90 by
milliseconds between two identical runs; the cost asked of observability (0.05 ms with metrics, 0.1 ms with
tracing at rate 1) drowns in that. Here every variant is one sidecar app in this process on an in-memory
state store (the store costs next to nothing, so what differs is the front door and the layers), requests
go straight into its ASGI callable (no sockets), and the variants take turns in short rounds, so the
machine's drift falls on all of them alike. Each request is timed alone; the report gives each variant's
p50/p90 and what it adds to the variant with metrics and tracing off. With tracing, spans are exported to
a Zipkin sink in this process's own HTTP server thread (the exporter's encoding and sending count).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

__all__ = ("main",)

_STORE = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec: {type: state.in-memory, version: v1, metadata: []}
"""


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(202)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _config(folder: Path, name: str, tracing: str) -> Path:
    path = folder / f"{name}.yaml"
    head = f"apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {{name: {name}}}\nspec:\n  tracing:\n"
    path.write_text(head + textwrap.indent(tracing, "    "))
    return path


async def _get(app: Any, path: str, method: str = "GET", body: bytes = b"") -> int:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"sidecar")], "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 3500),
    }  # fmt: skip
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def measure(rounds: int, per_round: int) -> dict[str, dict[str, float]]:
    from app.main import create_app
    from app.settings import Settings

    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    zipkin = f"http://127.0.0.1:{sink.server_address[1]}/api/v2/spans"
    folder = Path(tempfile.mkdtemp(prefix="layotto-obs-cost-"))
    (folder / "resources").mkdir()
    (folder / "resources" / "statestore.yaml").write_text(_STORE)
    variants: dict[str, dict[str, Any]] = {
        "off": {"enable_metrics": False},
        "metrics on": {},
        "tracing rate 0": {"enable_metrics": False, "config_file": _config(folder, "rate0", 'samplingRate: "0"\n')},
        "tracing rate 1 + zipkin": {
            "enable_metrics": False,
            "config_file": _config(folder, "rate1", f'samplingRate: "1"\nzipkin: {{endpointAddress: "{zipkin}"}}\n'),
        },
        "metrics + tracing rate 1": {
            "config_file": _config(folder, "both", f'samplingRate: "1"\nzipkin: {{endpointAddress: "{zipkin}"}}\n'),
        },
    }
    apps: dict[str, Any] = {}
    for label, flags in variants.items():
        settings = Settings(
            app_id=f"cost-{len(apps)}", resources_paths=(folder / "resources",), metrics_port=0, **flags
        )
        app = create_app(settings)
        await app.runtime.start()
        await app.runtime.wait_ready()
        apps[label] = app
    key = "cost-key"
    seed = orjson.dumps([{"key": key, "value": {"a": 1}}])
    for app in apps.values():
        assert await _get(app, "/v1.0/state/statestore", "POST", seed) == 204
    path = f"/v1.0/state/statestore/{key}"
    samples: dict[str, list[float]] = {label: [] for label in apps}
    for app in apps.values():  # warm-up
        for _ in range(per_round):
            await _get(app, path)
    for _ in range(rounds):
        for label, app in apps.items():
            timings = samples[label]
            for _ in range(per_round):
                started = time.perf_counter_ns()
                status = await _get(app, path)
                timings.append((time.perf_counter_ns() - started) / 1000)
                assert status == 200, (label, status)
            await asyncio.sleep(0)  # the exporter's thread and the loop get their turn between rounds
    for app in apps.values():
        await app.runtime.close()
    sink.shutdown()
    report = {}
    for label, timings in samples.items():
        ordered = sorted(timings)
        report[label] = {
            "p50_us": statistics.median(ordered),
            "p90_us": ordered[int(len(ordered) * 0.9)],
            "mean_us": statistics.fmean(ordered),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--per-round", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("HOME", tempfile.mkdtemp(prefix="layotto-obs-cost-home-"))
    report = asyncio.run(measure(args.rounds, args.per_round))
    base = report["off"]
    print(f"state get through the front door, in-process, {args.rounds} x {args.per_round} requests per variant")
    print(f"{'variant':<28}{'p50 us':>10}{'p90 us':>10}{'mean us':>10}{'+p90 ms':>10}")
    for label, figures in report.items():
        added = (figures["p90_us"] - base["p90_us"]) / 1000
        print(
            f"{label:<28}{figures['p50_us']:>10.1f}{figures['p90_us']:>10.1f}{figures['mean_us']:>10.1f}{added:>+10.3f}"
        )


if __name__ == "__main__":
    main()
