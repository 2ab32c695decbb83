"""Dapr's resiliency quickstart for components, against a real sidecar process and a private redis-server:
``retryForever`` (constant) and ``simpleCB`` (trips at 5 consecutive failures, half-opens after as long as a
retry waits) on ``targets.components.statestore.outbound``. The app saves orders; Redis stops; the save in
flight waits, retried, the breaker opening and half-opening; Redis comes back and the save succeeds.
Durations are the quickstart's divided by 10, so the test takes seconds, not a minute."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import IO

import httpx

from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy
from tests.governance.redis_server import private_redis
from tests.sidecar import component_yaml

WAIT = 90.0  # seconds: bounds a failure only

QUICKSTART = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: myresiliency
scopes:
  - order-processor
spec:
  policies:
    retries:
      retryForever:
        policy: constant
        duration: 500ms
        maxRetries: -1
    circuitBreakers:
      simpleCB:
        maxRequests: 1
        timeout: 500ms
        trip: consecutiveFailures >= 5
  targets:
    components:
      statestore:
        outbound:
          retry: retryForever
          circuitBreaker: simpleCB
"""


class Lines:
    """The lines a stream has written so far, read in a thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, fragment: str, count: int = 1) -> None:
        deadline = time.monotonic() + WAIT
        while self.text.count(fragment) < count:
            assert time.monotonic() < deadline, f"the sidecar never logged {fragment!r} x{count}:\n{self.text}"
            time.sleep(0.05)

    def join(self) -> None:
        self._thread.join(10)


def test_the_quickstart_save_waits_for_redis_and_succeeds(tmp_path: Path) -> None:
    with private_redis() as redis:
        (tmp_path / "statestore.yaml").write_text(
            component_yaml("statestore", "state.redis", {"redisHost": redis.address, "actorStateStore": "true"})
        )
        (tmp_path / "resiliency.yaml").write_text(QUICKSTART)
        port = free_port()
        sidecar = layotto(
            "--app-id", "order-processor", "--dapr-http-port", str(port), "--log-level", "info",
            "--resources-path", str(tmp_path),
        )  # fmt: skip
        assert sidecar.stderr is not None
        logs = Lines(sidecar.stderr)
        try:
            wait_healthy(port, WAIT)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as app:
                for order in range(1, 4):
                    saved = app.post("/v1.0/state/statestore", json=[{"key": "order", "value": order}])
                    assert saved.status_code == 204, saved.text
                redis.stop()
                outcome: dict[str, httpx.Response] = {}
                saving = threading.Thread(
                    target=lambda: outcome.update(
                        answer=app.post("/v1.0/state/statestore", json=[{"key": "order", "value": 4}])
                    )
                )
                saving.start()
                logs.wait_for("Error processing operation component[statestore] output. Retrying in 500ms")
                logs.wait_for('Circuit breaker "simpleCB-statestore" changed state from closed to open')
                logs.wait_for("changed state from open to half-open")
                logs.wait_for("changed state from half-open to open")
                assert saving.is_alive() and not outcome  # the app's call waits
                redis.start()
                saving.join(WAIT)
                assert outcome["answer"].status_code == 204, outcome["answer"].text
                logs.wait_for("changed state from half-open to closed")
                logs.wait_for("Recovered processing operation component[statestore] output after")
                for order in range(5, 7):
                    saved = app.post("/v1.0/state/statestore", json=[{"key": "order", "value": order}])
                    assert saved.status_code == 204, saved.text
                assert app.get("/v1.0/state/statestore/order").json() == 6
        finally:
            code, _ = stop(sidecar)
            logs.join()
        assert code == 0, logs.text
