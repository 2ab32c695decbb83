"""What the observability tests need beyond Python: free ports, Prometheus and Chromium (``install-tools.sh``, which
``make test`` runs, puts them in place; missing, a test skips with the reason, and fails in CI)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "build" / "prometheus" / "usr" / "bin" / "prometheus"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_tool(name: str, path: str | Path | None) -> str:
    if path is not None and Path(path).is_file():
        return str(path)
    message = f"{name} is missing: run tests/observability/install-tools.sh"
    if os.environ.get("LAYOTTO_REQUIRE_SERVICES"):
        pytest.fail(f"{message} (required in CI)")
    pytest.skip(message)


def prometheus() -> str:
    return require_tool("Prometheus", PROMETHEUS)


def chromium() -> tuple[str, str]:
    return require_tool("Chromium", shutil.which("chromium")), require_tool(
        "ChromeDriver", shutil.which("chromedriver")
    )
