"""``layotto dashboard`` in a real headless Chromium: it loads offline with no console error and shows the running
sidecar's components, requests and deliveries; the screenshot is kept in ``build/test-artifacts``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.dashboard.collect import _quantile, summarize_metrics
from tests.e2e.test_cli import layotto, wait_healthy
from tests.observability.tools import ROOT, chromium, free_port

ARTIFACTS = ROOT / "build" / "test-artifacts"


def test_summary_of_an_exposition() -> None:
    text = "\n".join(
        [
            "# TYPE dapr_http_server_request_count counter",
            'dapr_http_server_request_count{app_id="a",method="GET",path="/v1.0/state/s",status="200"} 8',
            'dapr_http_server_request_count{app_id="a",method="GET",path="/v1.0/state/s",status="500"} 2',
            "# TYPE dapr_http_server_latency histogram",
            *(
                f'dapr_http_server_latency_bucket{{app_id="a",method="GET",path="/v1.0/state/s",status="200",le="{le}"}} {n}'
                for le, n in (("1", 4), ("2", 8), ("+Inf", 10))
            ),
            'dapr_http_server_latency_sum{app_id="a",method="GET",path="/v1.0/state/s",status="200"} 15',
            'dapr_http_server_latency_count{app_id="a",method="GET",path="/v1.0/state/s",status="200"} 10',
            "# TYPE layotto_component_lock_latencies histogram",
            'layotto_component_lock_latencies_count{app_id="a",component="l",namespace="",operation="try_lock",success="true"} 3',
            "# TYPE layotto_component_lock_count counter",
            'layotto_component_lock_count{app_id="a",component="l",namespace="",operation="try_lock",success="true"} 3',
            "",
        ]
    )
    summary = summarize_metrics(text)
    [row] = summary["requests"]
    assert (row["count"], row["errors"], row["mean_ms"], row["p90_ms"]) == (10, 2, 1.5, 2.0)
    assert summary["components"] == [{"component": "l", "block": "lock", "operation": "try_lock", "ok": 3, "failed": 0}]
    assert _quantile([(1, 4), (2, 8), (float("inf"), 10)], 10, 0.5) == pytest.approx(1.25)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {"HOME": str(tmp_path)}


@pytest.mark.timeout(180)
def test_the_page_in_a_real_browser(home: dict[str, str], tmp_path: Path) -> None:
    browser, driver_path = chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    api, metrics, page = free_port(), free_port(), free_port()
    sidecar = layotto("--app-id", "dashboarded", "-H", str(api), "-M", str(metrics), "-G", str(free_port()), env=home)
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "dashboard", "--port", str(page)],
        cwd=ROOT,
        env={**os.environ, **home},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    driver = None
    try:
        wait_healthy(api, 60, sidecar)
        with httpx.Client(base_url=f"http://127.0.0.1:{api}", timeout=10) as client:
            assert client.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}]).status_code == 204
            for _ in range(5):
                assert client.get("/v1.0/state/statestore/k").status_code == 200
        deadline = time.monotonic() + 60
        while True:
            assert dashboard.poll() is None, dashboard.communicate()
            try:
                if httpx.get(f"http://127.0.0.1:{page}/api/sidecars", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        options = Options()
        options.binary_location = browser
        for argument in (
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}",
            "--window-size=1400,1800",
        ):  # fmt: skip
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        driver.get(f"http://127.0.0.1:{page}/")
        card = '[data-app-id="dashboarded"]'
        WebDriverWait(driver, 60).until(lambda d: "statestore" in d.find_element(By.CSS_SELECTOR, "main").text)
        text = driver.find_element(By.CSS_SELECTOR, card).text
        for expected in ("statestore", "state.sqlite", "pubsub.in-memory", "lockstore", "UP", "/v1.0/state/statestore"):
            assert expected in text, text
        # the page refreshes itself: a later call shows up without reloading
        with httpx.Client(base_url=f"http://127.0.0.1:{api}", timeout=10) as client:
            client.get("/v1.0/metadata")
        WebDriverWait(driver, 30).until(lambda d: "/v1.0/metadata" in d.find_element(By.CSS_SELECTOR, card).text)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
        requests = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )  # nothing fetched from elsewhere: it works offline
        assert all(url.startswith(f"http://127.0.0.1:{page}/") for url in requests), requests
    finally:
        if driver is not None:
            driver.quit()
        dashboard.send_signal(signal.SIGINT)
        dashboard.communicate(timeout=30)
        sidecar.send_signal(signal.SIGTERM)
        sidecar.communicate(timeout=60)
