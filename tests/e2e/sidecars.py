"""Several real sidecar processes (``python -m app.cli run``) of one app, on one resources folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy


class Sidecars:
    """``count`` sidecars of ``app_id``; ``urls`` are their base URLs. Use as a context manager."""

    def __init__(self, resources: Path, app_id: str, count: int = 2) -> None:
        self.resources, self.app_id = resources, app_id
        self.ports = [free_port() for _ in range(count)]
        self.processes: list[subprocess.Popen[str]] = []

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def start(self) -> Sidecars:
        for port in self.ports:
            args = ["--app-id", self.app_id, "--dapr-http-port", str(port), "--log-level", "warning"]
            self.processes.append(layotto(*args, "--resources-path", str(self.resources)))
        for port in self.ports:
            wait_healthy(port, timeout=30)
        return self

    def stop(self) -> None:
        failures = []
        for process in self.processes:
            code, stderr = stop(process)
            if code != 0:
                failures.append(stderr)
        self.processes.clear()
        assert not failures, failures

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Sidecars:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self.processes:
            self.stop()
