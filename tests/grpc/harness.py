"""A real sidecar process (``python -m app.cli run``) with both fronts on free ports, and the official Python
SDK pointed at it, as an app run by ``layotto run`` would be (``DAPR_HTTP_PORT``/``DAPR_GRPC_PORT``)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy

COMPONENTS = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: lockstore}
spec: {type: lock.in-memory, version: v1, metadata: []}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: configstore}
spec: {type: configuration.in-memory, version: v1, metadata: []}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec: {type: state.in-memory, version: v1, metadata: []}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: pubsub}
spec: {type: pubsub.in-memory, version: v1, metadata: []}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: sequencer}
spec: {type: sequencer.in-memory, version: v1, metadata: []}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: secretstore}
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - {name: secretsFile, value: "SECRETS"}
"""
SECRETS = '{"db-password": "s3cret", "api-key": "k3y"}'


@dataclass
class GrpcSidecar:
    process: subprocess.Popen[str]
    http_port: int
    grpc_port: int
    app_id: str

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def resources(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "secrets.json").write_text(SECRETS)
    (folder / "components.yaml").write_text(COMPONENTS.replace("SECRETS", str(folder / "secrets.json")))
    return folder


@contextlib.contextmanager
def grpc_sidecar(
    folder: Path,
    *flags: str,
    env: dict[str, str] | None = None,
    app_id: str = "",
    command: Sequence[str] = (),
) -> Iterator[GrpcSidecar]:
    """A sidecar serving HTTP and gRPC (and running ``command``, the app); sidecars of one ``folder`` share
    its HOME, so they find each other. Its stderr is printed when it stops (pytest shows it on failure)."""
    http_port, grpc_port = free_port(), free_port()
    app_id = app_id or f"grpc-{folder.name[-12:]}"
    args = ["--app-id", app_id, "-H", str(http_port), "-G", str(grpc_port), "--log-level", "warning"]
    args += ["--resources-path", str(resources(folder / "resources")), *flags]
    if command:
        args += ["--", *command]
    process = layotto(*args, env={"HOME": str(folder), **(env or {})})
    try:
        # with an API token, /v1.0/metadata (how wait_healthy tells its process) needs it: /healthz alone
        wait_healthy(http_port, 60, None if "DAPR_API_TOKEN" in (env or {}) else process)
        yield GrpcSidecar(process, http_port, grpc_port, app_id)
    finally:
        if process.poll() is None:
            _, stderr = stop(process)
        else:
            _, stderr = process.communicate()
        print(f"--- sidecar stderr ---\n{stderr}", file=sys.stderr)


def point_sdk_at(monkeypatch: pytest.MonkeyPatch, sidecar: GrpcSidecar, token: str = "") -> None:
    """What ``layotto run`` gives the app: the SDK reads these settings (``dapr.conf``) when it connects."""
    from dapr.conf import settings

    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", sidecar.http_port)
    monkeypatch.setattr(settings, "DAPR_GRPC_PORT", sidecar.grpc_port)
    monkeypatch.setattr(settings, "DAPR_HTTP_ENDPOINT", sidecar.http_url)
    monkeypatch.setattr(settings, "DAPR_GRPC_ENDPOINT", sidecar.grpc_address)
    monkeypatch.setattr(settings, "DAPR_API_TOKEN", token or None)
    monkeypatch.setattr(settings, "DAPR_HEALTH_TIMEOUT", 60)
