"""The official JavaScript SDK (``@dapr/dapr``, installed with npm into the test's folder) in gRPC mode against
a real sidecar: state, publish and bulk publish (``BulkPublishEventAlpha1``, the name it calls), lock,
metadata (also its start-up probe) and secrets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.grpc.harness import grpc_sidecar

SDK = "@dapr/dapr@3.18.0"
CLIENT = Path(__file__).resolve().parent / "apps" / "js_client.mjs"


@pytest.fixture(scope="module")
def js_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm and node, "Node.js and npm are needed for the JS SDK test"
    folder = tmp_path_factory.mktemp("js")
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", SDK],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.copy(CLIENT, folder / CLIENT.name)
    return folder


@pytest.mark.timeout(900)
def test_js_sdk_in_grpc_mode(js_sdk: Path, tmp_path: Path) -> None:
    key = f"js-{uuid.uuid4().hex[:10]}"
    with grpc_sidecar(tmp_path) as sidecar:
        env = {
            **os.environ,
            "DAPR_GRPC_PORT": str(sidecar.grpc_port),
            "DAPR_HTTP_PORT": str(sidecar.http_port),
            "KEY": key,
        }
        done = subprocess.run(["node", CLIENT.name], cwd=js_sdk, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    answers = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            answers[entry["name"]] = entry["value"]
    assert answers == {
        "state": {"n": 1},
        "bulk": {"failedMessages": []},
        "lock": {"success": True},
        "unlock": {"status": 2},
        "metadata": sidecar.app_id,
        "secret": {"db-password": "s3cret"},
    }
