"""Several real sidecar processes (``python -m app.cli run``) of one app, on one resources folder."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.test_cli import PortTaken, free_port, layotto, stop, wait_healthy

START_TIMEOUT = 60  # seconds for a sidecar to answer /healthz: generous, the machine may be busy
PORT_ATTEMPTS = 3


def started(launch: Callable[[int], subprocess.Popen[str]]) -> tuple[int, subprocess.Popen[str]]:
    """``launch(port)`` on a free port, once healthy; again on another port if that one was taken meanwhile
    (``free_port`` cannot reserve it: another process may bind it, or use it for an outgoing connection)."""
    for attempt in itertools.count(1):
        port = free_port()
        process = launch(port)
        try:
            wait_healthy(port, START_TIMEOUT, process)
            return port, process
        except PortTaken:
            if attempt == PORT_ATTEMPTS:
                raise
        except BaseException:
            process.kill()
            process.communicate()
            raise
    raise AssertionError("unreachable")


class Sidecars:
    """``count`` sidecars of ``app_id``; ``urls`` are their base URLs. Use as a context manager.

    Stopping fails when a sidecar exited on its own (it died under the test) or not with 0, and prints every
    sidecar's stderr (pytest shows it with a failed test), so a report says whether a sidecar was at fault."""

    def __init__(self, resources: Path, app_id: str, count: int = 2) -> None:
        self.resources, self.app_id = resources, app_id
        self.ports = [free_port() for _ in range(count)]
        self.processes: list[subprocess.Popen[str]] = []

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def start(self) -> Sidecars:
        """Start all, then wait for each; one whose port was taken meanwhile is started again on a new port."""
        self.processes = [self._launch(port) for port in self.ports]
        try:
            for index in range(len(self.ports)):
                for attempt in itertools.count(1):
                    try:
                        wait_healthy(self.ports[index], START_TIMEOUT, self.processes[index])
                        break
                    except PortTaken:
                        if attempt == PORT_ATTEMPTS:
                            raise
                        self.ports[index] = free_port()
                        self.processes[index] = self._launch(self.ports[index])
        except BaseException:  # a sidecar that never came up (or pytest's timeout): leave no process behind
            for process in self.processes:
                process.kill()
                _, stderr = process.communicate()
                print(f"--- stderr of a sidecar that did not start ---\n{stderr}", file=sys.stderr)
            self.processes.clear()
            raise
        return self

    def _launch(self, port: int) -> subprocess.Popen[str]:
        args = ["--app-id", self.app_id, "--dapr-http-port", str(port), "--log-level", "warning"]
        return layotto(*args, "--resources-path", str(self.resources))

    def stop(self) -> None:
        failures = []
        for port, process in zip(self.ports, self.processes, strict=True):
            died = process.poll()
            code, stderr = stop(process)
            if died is not None:
                failures.append(f"sidecar on {port} exited by itself with {died}:\n{stderr}")
            elif code != 0:
                failures.append(f"sidecar on {port} stopped with {code}:\n{stderr}")
            if stderr:
                print(f"--- stderr of the sidecar on {port} (exit {code}) ---\n{stderr}", file=sys.stderr)
        self.processes.clear()
        assert not failures, "\n".join(failures)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Sidecars:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self.processes:
            self.stop()
