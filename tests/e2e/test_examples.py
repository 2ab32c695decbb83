"""The examples as a user runs them: ``layotto run -f examples`` (examples/dapr.yaml) starts the Python
orders app and the Node checkout app (Dapr's JS SDK) with a sidecar each, on this machine's Redis, and the
demo flows: sequencer ids, locks, state, invocation of checkout, pub/sub both ways, configuration updates.

The only change to the file is the two app ports, taken free here (6001 and 6002 may be in use)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.test_cli import ROOT, cli, free_port
from tests.services import require_redis

pytestmark = pytest.mark.timeout(300)


def test_examples_run_file_runs_both_apps_and_the_demo_flows(tmp_path: Path) -> None:
    redis = require_redis()
    if not (ROOT / "examples" / "node" / "node_modules" / "@dapr" / "dapr").is_dir():
        message = "examples/node has no node_modules (make test runs npm ci there)"
        if os.environ.get("LAYOTTO_REQUIRE_SERVICES"):
            pytest.fail(message)
        pytest.skip(message)
    document = yaml.safe_load((ROOT / "examples" / "dapr.yaml").read_text())
    document["common"]["resourcesPath"] = str(ROOT / "component_specs" / "redis")
    document["common"]["env"]["REDIS_HOST"] = redis
    ports: dict[str, int] = {}
    for app in document["apps"]:
        app["appDirPath"] = str(ROOT / "examples" / app["appDirPath"])
        ports[app["appID"]] = app["appPort"] = free_port()
    (tmp_path / "dapr.yaml").write_text(yaml.safe_dump(document))
    log = (tmp_path / "run.log").open("w")
    runner = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "-f", str(tmp_path / "dapr.yaml")],
        cwd=ROOT,
        env={**os.environ, "HOME": str(tmp_path)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def output() -> str:
        return (tmp_path / "run.log").read_text()[-6000:]

    status: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert runner.poll() is None, output()
            try:
                status = httpx.get(f"http://127.0.0.1:{ports['orders']}/status", timeout=5).json()
            except httpx.TransportError:
                status = {}
            orders = status.get("orders", [])[:3]
            # The demo's topics are long-lived (as in Dapr's quickstarts) and a new consumer group reads a
            # Redis stream from its start: events of earlier runs may arrive too, so only this run's orders count.
            receipts = _order_ids(status.get("receipts", []))
            if len(orders) == 3 and set(orders) <= receipts and status.get("discounts"):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"the demo did not flow: {status}\n{output()}")
        accepted = {a["orderId"]: a for a in status["accepted"]}
        assert all(accepted[i] == {"orderId": i, "status": "accepted", "by": "checkout"} for i in orders)
        assert _order_ids(status["audits"]) >= set(orders)
        text = output()
        assert "== orders == orders: accepted" in text and "== checkout == checkout: paid order" in text
        stopped = cli("stop", "-f", str(tmp_path / "dapr.yaml"), env={"HOME": str(tmp_path)})
        assert stopped.returncode == 0, stopped.stderr
        assert sorted(stopped.stdout.splitlines()) == [
            "app stopped successfully: checkout",
            "app stopped successfully: orders",
        ]
        runner.wait(timeout=60)  # every app stopped: the runner ends
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=60)
        finally:
            log.close()
    assert runner.returncode == 0, output()


def _order_ids(events: list[Any]) -> set[Any]:
    return {event.get("orderId") for event in events if isinstance(event, dict)}
