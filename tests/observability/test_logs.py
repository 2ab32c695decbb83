"""Log lines of a real ``layotto run``: JSON with daprd's fields, our logger names, one line per API call."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.observability.logs import JsonFormatter, OurNames
from tests.observability.tools import ROOT, free_port

DAPR_FIELDS = {"app_id", "instance", "level", "msg", "scope", "time", "type", "ver"}


class Sidecar:
    def __init__(self, home: Path, *args: str) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "app.cli", "run", "--app-id", "logs", "-H", str(self.port)]
        argv += ["-G", str(free_port()), "-M", str(free_port()), *args]
        env = {**os.environ, "HOME": str(home)}
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.process.communicate()[1]
            try:
                if self.http.get("/v1.0/healthz").status_code == 204:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "not healthy"
            time.sleep(0.05)

    def stop(self) -> list[str]:
        self.http.close()
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=60)
        return stderr.splitlines()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def test_json_lines_have_daprs_fields_and_our_names(home: Path) -> None:
    sidecar = Sidecar(home, "--log-as-json", "--enable-api-logging")
    assert sidecar.http.get("/v1.0/state/statestore/k", headers={"user-agent": "tester/1"}).status_code == 204
    assert sidecar.http.get("/v1.0/healthz").status_code == 204
    lines = [json.loads(line) for line in sidecar.stop()]  # every line is JSON
    assert lines and all(set(line) >= DAPR_FIELDS for line in lines)
    assert all(list(line) == sorted(line) for line in lines)  # alphabetical, as logrus writes them
    assert all(line["app_id"] == "logs" and line["type"] == "log" for line in lines)
    assert all(line["time"].endswith("Z") and len(line["time"].split(".")[1]) == 10 for line in lines)
    scopes = {line["scope"] for line in lines}
    assert not {s for s in scopes if s.startswith("uvicorn")}, scopes
    assert {"layotto.runtime", "layotto.http", "layotto.api"} <= scopes
    api = [line for line in lines if line["msg"] == "HTTP API Called"]
    get = next(line for line in api if line["method"] == "GET /v1.0/state/statestore/k")
    assert get["code"] == 204 and get["level"] == "info" and get["useragent"] == "tester/1"
    assert isinstance(get["duration"], int) and get["size"] == 0 and get["caller"].startswith("127.0.0.1:")
    assert any(line["method"] == "GET /v1.0/healthz" for line in api)


def test_plain_lines_name_our_loggers_and_log_no_api_calls_by_default(home: Path) -> None:
    sidecar = Sidecar(home)
    sidecar.http.get("/v1.0/state/statestore/k")
    lines = sidecar.stop()
    assert not [line for line in lines if "uvicorn" in line], lines
    assert any(" INFO layotto.http: " in line for line in lines)
    assert not [line for line in lines if "HTTP API Called" in line]


def test_api_logging_from_the_config_file_and_the_flag_wins(home: Path) -> None:
    config = home / "config.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            apiVersion: dapr.io/v1alpha1
            kind: Configuration
            metadata: {name: c}
            spec:
              logging:
                apiLogging: {enabled: true, obfuscateURLs: true, omitHealthChecks: true}
            """
        )
    )
    sidecar = Sidecar(home, "-c", str(config), "--log-level", "error")
    sidecar.http.get("/v1.0/state/statestore/secret-key")
    sidecar.http.get("/v1.0/healthz")
    lines = [line for line in sidecar.stop() if "HTTP API Called" in line]
    # forced to info although --log-level is error; the URL obfuscated to its route; health checks omitted
    assert len(lines) == 1, lines
    assert 'method="GET /v1.0/state/{store_name}/{key}"' in lines[0] and "secret-key" not in lines[0]
    off = Sidecar(home, "-c", str(config), "--enable-api-logging=false")
    off.http.get("/v1.0/state/statestore/k")
    assert not [line for line in off.stop() if "HTTP API Called" in line]


def test_json_formatter_levels_and_exceptions() -> None:
    formatter = JsonFormatter("a")
    record = logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, "careful %s", ("x",), None)
    OurNames().filter(record)
    line = json.loads(formatter.format(record))
    assert (line["level"], line["msg"], line["scope"]) == ("warning", "careful x", "layotto.http")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("layotto.runtime", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(formatter.format(failed))
    assert line["level"] == "error" and "ValueError: boom" in line["msg"]
