"""An idle keep-alive connection stays open, as with daprd (Go's ``http.Server`` without an idle timeout).

A server that closes idle connections races every client that reuses one at that moment: the request is
sent as the server closes, and the client sees a reset or an empty reply (``httpx.ReadError`` /
``RemoteProtocolError``), which no client retries for a POST. uvicorn's default closes after 5 s, exactly
httpx's own keep-alive expiry, so under load e2e tests lost requests; clients of Dapr (Go: 90 s, OkHttp:
5 min) keep connections idle for longer still.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy

IDLE = 8.0  # seconds: well past uvicorn's default of 5, so that default shows even on a busy machine
REQUEST = b"GET /v1.0/healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n"


@pytest.fixture
def port(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    args = ("--app-id", "idle", "--dapr-http-port", str(port), "--log-level", "warning")
    sidecar = layotto(*args, env={"HOME": str(tmp_path)})  # the embedded default's files in the test's folder
    try:
        wait_healthy(port, process=sidecar)
        yield port
    finally:
        code, stderr = stop(sidecar)
        assert code == 0, stderr


def exchange(connection: socket.socket) -> bytes:
    connection.sendall(REQUEST)
    return connection.recv(65536)


def test_an_idle_connection_is_not_closed_by_the_sidecar(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        assert exchange(connection).startswith(b"HTTP/1.1 204")
        time.sleep(IDLE)
        readable, _, _ = select.select([connection], [], [], 0)
        assert not readable, "the sidecar closed the idle connection"  # a closed socket reads as EOF
        assert exchange(connection).startswith(b"HTTP/1.1 204")
