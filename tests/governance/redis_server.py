"""A redis-server of one test alone, which the test can stop and start again on the same port."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

START_TIMEOUT = 30  # seconds: generous, the machine may be busy


class PrivateRedis:
    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server on {self.port} exited with {self.process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.05)
        raise AssertionError(f"redis-server on {self.port} did not listen within {START_TIMEOUT}s")

    def stop(self) -> None:
        """Stop it and wait until the port refuses connections."""
        if self.process is None:
            return
        self.process.terminate()
        self.process.wait(START_TIMEOUT)
        self.process = None


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if os.environ.get("LAYOTTO_REQUIRE_SERVICES"):
            pytest.fail("redis-server is needed (required in CI)")
        pytest.skip("no redis-server")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()
