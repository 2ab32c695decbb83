"""``spec.secrets.scopes`` of the ``--config`` Configuration, against a real sidecar process: a denied secret
is 403 ``ERR_PERMISSION_DENIED``, a bulk read leaves denied secrets out, a store without a scope allows all,
and a component's ``secretKeyRef`` (the runtime's read, not the app's) still resolves a denied secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy

WAIT = 60.0

CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: scopes
spec:
  secrets:
    scopes:
      - storeName: listed
        defaultAccess: deny
        allowedSecrets: ["open", "ignored-deny"]
        deniedSecrets: ["ignored-deny"]
      - storeName: denying
        defaultAccess: allow
        deniedSecrets: ["closed"]
      - storeName: closed-store
        defaultAccess: DENY
"""


def _store(name: str, file: Path) -> str:
    return (
        f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {{name: {name}}}\nspec:\n"
        f"  type: secretstores.local.file\n  version: v1\n  metadata:\n"
        f"    - {{name: secretsFile, value: '{file}'}}\n"
    )


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[httpx.Client]:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"open": "1", "closed": "2", "ignored-deny": "3", "other": "4", "redis": "x"}))
    resources = tmp_path / "resources"
    resources.mkdir()
    for name in ("listed", "denying", "closed-store", "unscoped"):
        (resources / f"{name}.yaml").write_text(_store(name, secrets))
    # a component whose metadata reads a secret the app may not read: resolved all the same
    (resources / "state.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: statestore}\nspec:\n"
        "  type: state.in-memory\n  version: v1\n  metadata:\n"
        "    - name: unused\n      secretKeyRef: {name: closed, key: closed}\nauth: {secretStore: closed-store}\n"
    )
    (tmp_path / "config.yaml").write_text(CONFIG)
    port = free_port()
    process = layotto(
        "--app-id", "scoped", "--dapr-http-port", str(port), "--resources-path", str(resources),
        "--config", str(tmp_path / "config.yaml"), "--log-level", "warning",
    )  # fmt: skip
    try:
        wait_healthy(port, WAIT, process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as client:
            yield client
    finally:
        code, stderr = stop(process)
        assert code == 0, stderr


def _denied(key: str, store: str) -> dict[str, str]:
    return {"errorCode": "ERR_PERMISSION_DENIED", "message": f'access denied by policy to get "{key}" from "{store}"'}


def test_scopes_decide_what_the_app_reads(sidecar: httpx.Client) -> None:
    assert sidecar.get("/v1.0/secrets/listed/open").json() == {"open": "1"}
    for key in ("ignored-deny", "open"):  # a non-empty allowedSecrets decides alone
        assert sidecar.get(f"/v1.0/secrets/listed/{key}").status_code == 200
    for store, key in (("listed", "other"), ("denying", "closed"), ("closed-store", "open")):
        denied = sidecar.get(f"/v1.0/secrets/{store}/{key}")
        assert (denied.status_code, denied.json()) == (403, _denied(key, store))
    assert sidecar.get("/v1.0/secrets/denying/other").json() == {"other": "4"}
    assert sidecar.get("/v1.0/secrets/unscoped/closed").json() == {"closed": "2"}
    # a secret that does not exist but is denied: denied before the store is asked
    assert sidecar.get("/v1.0/secrets/closed-store/missing").status_code == 403


def test_bulk_reads_leave_denied_secrets_out(sidecar: httpx.Client) -> None:
    assert set(sidecar.get("/v1.0/secrets/listed/bulk").json()) == {"open", "ignored-deny"}
    assert set(sidecar.get("/v1.0/secrets/denying/bulk").json()) == {"open", "ignored-deny", "other", "redis"}
    assert sidecar.get("/v1.0/secrets/closed-store/bulk").status_code == 204  # nothing readable
    assert len(sidecar.get("/v1.0/secrets/unscoped/bulk").json()) == 5


def test_scopes_apply_to_the_grpc_front_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import grpc
    from dapr.clients import DaprClient

    from tests.grpc.harness import grpc_sidecar, point_sdk_at

    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: s}\nspec:\n  secrets:\n    scopes:\n"
        "      - {storeName: secretstore, defaultAccess: deny, allowedSecrets: [api-key]}\n"
    )
    with grpc_sidecar(tmp_path / "sidecar", "--config", str(config)) as sidecar:
        point_sdk_at(monkeypatch, sidecar)
        with DaprClient() as client:
            assert client.get_secret("secretstore", "api-key").secret == {"api-key": "k3y"}
            with pytest.raises(grpc.RpcError) as denied:
                client.get_secret("secretstore", "db-password")
            error: Any = denied.value
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error.details() == 'access denied by policy to get "db-password" from "secretstore"'
            assert client.get_bulk_secret("secretstore").secrets == {"api-key": {"api-key": "k3y"}}
