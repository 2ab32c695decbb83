"""``spec.api.allowed`` / ``spec.api.denied`` of the ``--config`` Configuration, against real sidecar
processes: an HTTP API that is not allowed is not routed (invocation's 404 without an app id, or a plain 404
when invocation is not allowed either), health is always served, and a gRPC method that is not allowed
answers UNIMPLEMENTED with daprd's ErrorInfo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from dapr.clients import DaprClient
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from app.governance.api_access import GRPC_ENDPOINTS, http_allowed
from app.main import routes
from building_blocks.configuration_spec import ApiAccessRule, ApiSpec
from tests.grpc.harness import grpc_sidecar, point_sdk_at

NO_APP_ID = {
    "errorCode": "ERR_DIRECT_INVOKE",
    "message": "failed getting app id either from the URL path or the header dapr-app-id",
}


def _config(tmp_path: Path, api: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {{name: api}}\nspec:\n  api:\n{api}")
    return str(path)


def test_matching_is_daprs() -> None:
    def rule(version: str, name: str, protocol: str = "http") -> ApiAccessRule:
        return ApiAccessRule(name, version, protocol)

    state_v1 = ApiSpec(denied=(rule("v1", "state"),))
    assert not http_allowed("/v1.0/state/{store_name}", state_v1)
    assert http_allowed("/v1.0-alpha1/state/{store_name}/query", state_v1)  # group v1alpha1/state
    legacy = ApiSpec(denied=(rule("v1.0", "s"),))  # a prefix of the path: state, secrets and shutdown
    denied = {r.template for r in routes().routes if not http_allowed(r.template, legacy)}
    assert {t.split("/")[2] for t in denied} == {"state", "secrets", "shutdown"}
    assert http_allowed("/v1.0/healthz", ApiSpec(allowed=(rule("v1", "state"),)))  # always served
    assert http_allowed("/v1.0/state/{s}", ApiSpec(denied=(rule("v1", "state", ""),)))  # no protocol: no rule
    assert http_allowed("/v1.0/state/{s}", ApiSpec(denied=(rule("v1", "state", "grpc"),)))
    both = ApiSpec(allowed=(rule("v1", "state"), rule("v1", "secrets")), denied=(rule("v1", "state"),))
    assert not http_allowed("/v1.0/state/{store_name}", both)  # the deny list is checked first
    assert http_allowed("/v1.0/secrets/{store_name}/bulk", both)
    assert not http_allowed("/v1.0/publish/{pubsub_name}/{topic:path}", both)  # not in the allow list
    assert "/dapr.proto.runtime.v1.Dapr/GetSecret" in GRPC_ENDPOINTS["secrets.v1"]


def test_a_denied_http_api_falls_to_invocation(tmp_path: Path) -> None:
    config = _config(tmp_path, "    denied:\n      - {name: state, version: v1.0, protocol: http}\n")
    with (
        grpc_sidecar(tmp_path / "sidecar", "--config", config) as sidecar,
        httpx.Client(base_url=sidecar.http_url, timeout=30) as http,
    ):
        for method, path in (("GET", "/v1.0/state/statestore/k"), ("POST", "/v1.0/state/statestore")):
            answer = http.request(method, path, json=[{"key": "k", "value": 1}])
            assert (answer.status_code, answer.json()) == (404, NO_APP_ID), path
        assert http.get("/v1.0/secrets/secretstore/api-key").json() == {"api-key": "k3y"}
        assert http.post("/v1.0-alpha1/lock/lockstore", json={}).status_code != 404
        assert http.get("/v1.0/healthz").status_code == 204


def test_an_allow_list_serves_only_its_apis_on_both_fronts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(
        tmp_path,
        "    allowed:\n      - {name: state, version: v1, protocol: http}\n"
        "      - {name: metadata, version: v1, protocol: http}\n"  # how the harness tells its sidecar
        "      - {name: state, version: v1, protocol: grpc}\n",
    )
    with grpc_sidecar(tmp_path / "sidecar", "--config", config) as sidecar:
        with httpx.Client(base_url=sidecar.http_url, timeout=30) as http:
            assert http.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}]).status_code == 204
            assert http.get("/v1.0/state/statestore/k").json() == 1
            for path in ("/v1.0/secrets/secretstore/api-key", "/v1.0/invoke/other/method/x", "/v1.0/publish/p/t"):
                answer = http.get(path)
                assert (answer.status_code, answer.text) == (404, "404 page not found\n"), path
            assert http.get("/v1.0/healthz").status_code == 204
        point_sdk_at(monkeypatch, sidecar)
        with DaprClient() as client:
            assert client.get_state("statestore", "k").data == b"1"
            with pytest.raises(grpc.RpcError) as refused:
                client.get_secret("secretstore", "api-key")
            error: Any = refused.value
            assert (error.code(), error.details()) == (grpc.StatusCode.UNIMPLEMENTED, "Not Implemented")
            status = rpc_status.from_call(error)
            assert status is not None
            info = error_details_pb2.ErrorInfo()
            assert status.details[0].Unpack(info)
            assert (info.reason, info.domain) == ("Not Implemented", "dapr.io")
            assert dict(info.metadata) == {
                "http.code": "501",
                "http.error_message": "requested endpoint is not available",
            }
