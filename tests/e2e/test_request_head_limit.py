"""``--read-buffer-size``: request heads over the limit get 431 at once, and never stall other requests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy

MiB = 1 << 20


def _start(tmp_path: Path, *flags: str) -> tuple[int, object]:
    port = free_port()
    process = layotto("--dapr-http-port", str(port), *flags, env={"HOME": str(tmp_path)})
    wait_healthy(port, timeout=60)
    return port, process


@pytest.fixture
def default_port(tmp_path: Path) -> Iterator[int]:
    port, process = _start(tmp_path)
    yield port
    stop(process)  # type: ignore[arg-type]


def _status_line(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        return sock.recv(4096).split(b"\r\n", 1)[0]


def _request_with_header(size: int) -> bytes:
    return b"GET /v1.0/healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * size + b"\r\n\r\n"


def test_heads_within_the_default_limit_pass_and_larger_ones_get_431(default_port: int) -> None:
    assert _status_line(default_port, _request_with_header(6000)) == b"HTTP/1.1 204 No Content"
    assert _status_line(default_port, _request_with_header(12000)) == b"HTTP/1.1 431 Request Header Fields Too Large"
    long_path = b"GET /v1.0/state/statestore/" + b"k" * 12000 + b" HTTP/1.1\r\nhost: x\r\n\r\n"
    assert _status_line(default_port, long_path) == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert httpx.get(f"http://127.0.0.1:{default_port}/v1.0/healthz").status_code == 204


def test_large_bodies_are_not_taken_for_heads(default_port: int) -> None:
    """Only head bytes count: bodies of any size up to --max-body-size pass, in any number of reads."""
    with httpx.Client(base_url=f"http://127.0.0.1:{default_port}", timeout=30) as client:
        for size in (100, 9000, 300_000, 3 * MiB):
            body = b'[{"key":"big","value":"' + b"v" * size + b'"}]'
            assert client.post("/v1.0/state/statestore", content=body).status_code == 204, size
            assert client.get("/v1.0/state/statestore/big").content == b'"' + b"v" * size + b'"'


def test_a_huge_header_is_refused_before_it_is_read_and_health_keeps_answering(default_port: int) -> None:
    sent = 0
    answer = b""
    done = threading.Event()

    def hostile() -> None:
        nonlocal sent, answer
        chunk = b"a" * (64 << 10)
        with socket.create_connection(("127.0.0.1", default_port), timeout=60) as sock:
            try:
                sock.sendall(b"GET /v1.0/healthz HTTP/1.1\r\nhost: x\r\nx-big: ")
                while sent < 48 * MiB:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass  # the sidecar closed the connection: expected
            try:
                answer = sock.recv(4096)
            except OSError:
                answer = b"(reset)"
        done.set()

    thread = threading.Thread(target=hostile, daemon=True)
    thread.start()
    worst = 0.0
    with httpx.Client(base_url=f"http://127.0.0.1:{default_port}", timeout=30) as client:
        while not done.is_set():
            started = time.monotonic()
            assert client.get("/v1.0/healthz").status_code == 204
            worst = max(worst, time.monotonic() - started)
    thread.join()
    assert sent < 8 * MiB, f"the sidecar read {sent} bytes of a head before refusing it"
    assert answer.startswith(b"HTTP/1.1 431") or answer in (b"", b"(reset)"), answer[:100]
    assert worst < 0.5, worst


def test_read_buffer_size_raises_the_limit(tmp_path: Path) -> None:
    port, process = _start(tmp_path, "--read-buffer-size", "64Ki")
    try:
        assert _status_line(port, _request_with_header(32000)) == b"HTTP/1.1 204 No Content"
        assert _status_line(port, _request_with_header(80000)) == b"HTTP/1.1 431 Request Header Fields Too Large"
    finally:
        stop(process)  # type: ignore[arg-type]
    port, process = _start(tmp_path, "--dapr-http-read-buffer-size", "16")
    try:
        assert _status_line(port, _request_with_header(16000)) == b"HTTP/1.1 204 No Content"
        assert _status_line(port, _request_with_header(24000)) == b"HTTP/1.1 431 Request Header Fields Too Large"
    finally:
        stop(process)  # type: ignore[arg-type]
