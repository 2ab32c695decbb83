"""The floor for a Python sidecar hop, measured next to the sidecars in the same run: a two-hop raw relay.

``python -m perf.floor`` starts the target app (``perf.target_app``), two raw relays chained in front of it
(the floor: each an asyncio ``Protocol`` with httptools and one keep-alive upstream connection per client
connection, forwarding the request's and the answer's bytes as they are framed, with no Task, Future or
header rewriting per request), and two sidecars (the caller's and the callee's, invoking ``echo`` on the app)
on the lane given. Over one keep-alive connection it sends the same 1 KB ``POST /echo`` through each chain,
one after the other, and reports per chain the latency percentiles (``added`` = chain - the app direct) and
the CPU seconds per 1000 requests of each hop process, then the sidecar/floor ratios.

Measured on a 2-core machine shared with other work (load average 3-4; the figures move with the load):
the floor costs 0.07-0.08 CPU s per 1000 requests per hop and adds +0.10 ms p50 for both hops, where two
sidecars on the protocol lane cost 0.36-0.39 per hop and add +1.0 ms.

``python -m perf.floor relay --port P --upstream U`` runs one relay: what this benchmark starts, and what the
``invoke`` scenario of ``perf/run`` starts as its floor baseline at the open-loop rate (there, at 1000 rps on
the loaded machine: 0.125 CPU s per 1000 requests per hop, +0.24 ms added p50 for both hops).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, cast

import httptools

from perf.processes import free_port
from perf.procfs import cpu_seconds

__all__ = ("Relay", "main")

_BODY = b"x" * 1024


class _Upstream(asyncio.Protocol):
    """The relay's connection to the next hop: answers go back to ``downstream`` byte for byte."""

    def __init__(self, downstream: Relay) -> None:
        self.downstream = downstream
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.buffer: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer.append(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        answer, self.buffer = b"".join(self.buffer), []
        self.downstream.answer(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.downstream.close()


class Relay(asyncio.Protocol):
    """One client connection of the floor relay; its upstream connection is opened with it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream_address = upstream
        self.transport: asyncio.Transport | None = None
        self.upstream: _Upstream | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.buffer: list[bytes] = []
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        host, port = self.upstream_address
        connecting = loop.create_connection(lambda: _Upstream(self), host, port)
        loop.create_task(connecting).add_done_callback(self._connected)  # once per connection, not per request

    def _connected(self, task: asyncio.Task[tuple[asyncio.BaseTransport, _Upstream]]) -> None:
        if task.exception() is not None:
            self.close()
            return
        transport, self.upstream = task.result()
        if self.transport is None or self.transport.is_closing():  # the client left meanwhile (a port probe)
            transport.close()
            return
        for request in self.pending:
            cast(asyncio.Transport, transport).write(request)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        self.buffer.append(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        request, self.buffer = b"".join(self.buffer), []
        upstream = self.upstream
        if upstream is None or upstream.transport is None:
            self.pending.append(request)
        else:
            upstream.transport.write(request)

    def answer(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.close()


def _relay(port: int, upstream: int) -> None:
    import uvloop

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Relay(("127.0.0.1", upstream)), "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(serve())


# -- the benchmark -----------------------------------------------------------------------------------------------


class _Answers:
    def __init__(self) -> None:
        self.done = 0
        self.parser = httptools.HttpResponseParser(self)

    def on_message_complete(self) -> None:
        self.done += 1


async def _one_connection(port: int, request: bytes, count: int) -> list[float]:
    """Latencies (ms) of ``count`` requests sent one after the other on one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = _Answers()
    latencies = []
    try:
        for index in range(count):
            started = time.perf_counter()
            writer.write(request)
            while answers.done <= index:
                data = await reader.read(65536)
                if not data:
                    raise RuntimeError(f"port {port} closed the connection")
                answers.parser.feed_data(data)
            if not 200 <= answers.parser.get_status_code() < 300:
                raise RuntimeError(f"port {port} answered {answers.parser.get_status_code()}")
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()
    return latencies


async def _healthy(port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await _one_connection(port, f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode(), 1)
            return
        except (OSError, RuntimeError):
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing healthy on port {port}{path}")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "HOME": tempfile.mkdtemp(prefix="layotto-floor-"), "LAYOTTO_HTTP_LANE": args.lane}
    resources = Path(env["HOME"]) / "resources"
    resources.mkdir()
    (resources / "state.yaml").write_text(
        textwrap.dedent("""\
            apiVersion: dapr.io/v1alpha1
            kind: Component
            metadata: {name: statestore}
            spec: {type: state.in-memory, version: v1, metadata: []}
            """)
    )
    python = sys.executable
    app, near, far = free_port(), free_port(), free_port()
    processes = {"app": _spawn([python, "-m", "perf.target_app", "--port", str(app)], env)}
    processes["relay 2"] = _spawn(
        [python, "-m", "perf.floor", "relay", "--port", str(far), "--upstream", str(app)], env
    )
    processes["relay 1"] = _spawn(
        [python, "-m", "perf.floor", "relay", "--port", str(near), "--upstream", str(far)], env
    )
    sidecar_ports = {"callee": free_port(), "caller": free_port()}
    for name, port in sidecar_ports.items():
        argv = [python, "-m", "app.cli", "run", "--app-id", f"floor-{name}", "--dapr-http-port", str(port)]
        argv += ["--dapr-grpc-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "warn"]
        argv += ["--resources-path", str(resources)] + (["--app-port", str(app)] if name == "callee" else [])
        processes[f"sidecar {name}"] = _spawn(argv, env)
    try:
        await _healthy(app, "/health")
        for port in sidecar_ports.values():
            await _healthy(port, "/v1.0/healthz")
        echo = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: 1024\r\n\r\n" + _BODY
        invoke = echo.replace(b"POST /echo", b"POST /v1.0/invoke/floor-callee/method/echo", 1)
        chains = {
            "direct (app)": (app, echo, ()),
            "floor (2 raw relays)": (near, echo, ("relay 1", "relay 2")),
            "two sidecars": (sidecar_ports["caller"], invoke, ("sidecar caller", "sidecar callee")),
        }
        results: dict[str, Any] = {}
        for name, (port, request, hops) in chains.items():
            await _one_connection(port, request, args.warmup)
            before = {hop: cpu_seconds(processes[hop].pid) or 0.0 for hop in hops}
            latencies = await _one_connection(port, request, args.requests)
            cpu = {hop: ((cpu_seconds(processes[hop].pid) or 0.0) - before[hop]) / args.requests * 1000 for hop in hops}
            results[name] = {
                "p50": statistics.median(latencies),
                "p90": _percentile(latencies, 0.9),
                "p99": _percentile(latencies, 0.99),
                "cpu_per_1k": cpu,
            }
        return results
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait()


def _report(results: dict[str, Any], lane: str, requests: int) -> None:
    load = os.getloadavg()
    print(f"floor vs sidecars · lane {lane} · {requests} sequential 1 KB POSTs on one connection per chain")
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}")
    direct = results["direct (app)"]
    print(f"{'chain':24} {'p50':>7} {'p90':>7} {'p99':>7}  {'added p50':>9}  cpu s/1k per hop")
    for name, row in results.items():
        hops = "  ".join(f"{hop} {cpu:.3f}" for hop, cpu in row["cpu_per_1k"].items())
        added = row["p50"] - direct["p50"]
        print(f"{name:24} {row['p50']:7.3f} {row['p90']:7.3f} {row['p99']:7.3f}  {added:+9.3f}  {hops}")
    floor, sidecars = results["floor (2 raw relays)"], results["two sidecars"]
    floor_cpu = sum(floor["cpu_per_1k"].values()) / 2
    sidecar_cpu = sum(sidecars["cpu_per_1k"].values()) / 2
    floor_added = floor["p50"] - direct["p50"]
    sidecar_added = sidecars["p50"] - direct["p50"]
    print(f"sidecar / floor: CPU per request per hop x{sidecar_cpu / floor_cpu:.2f} ", end="")
    print(f"({sidecar_cpu:.3f} vs {floor_cpu:.3f} s/1k); one-connection added p50 x{sidecar_added / floor_added:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m perf.floor", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    relay = commands.add_parser("relay", help="run one raw relay")
    relay.add_argument("--port", type=int, required=True)
    relay.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--lane", choices=["asgi", "protocol"], default="protocol", help="the sidecars' lane")
    parser.add_argument("--requests", type=int, default=5000, help="measured requests per chain (5000)")
    parser.add_argument("--warmup", type=int, default=500, help="requests before measuring (500)")
    args = parser.parse_args()
    if args.command == "relay":
        _relay(args.port, args.upstream)
        return
    _report(asyncio.run(_measure(args)), args.lane, args.requests)


if __name__ == "__main__":
    main()
