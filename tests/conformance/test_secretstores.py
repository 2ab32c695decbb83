"""The secret-store conformance suite: every ``secretstores.*`` component, through the HTTP API (and the gRPC
API's GetSecret/GetBulkSecret at the end).

Dapr's secret-store conformance (get one secret, bulk get with others tolerated) and its HTTP contract:
``GET /v1.0/secrets/{store}/{name}`` and ``/bulk``, 401 for an unknown store, 500 ``ERR_SECRET_GET`` when the
store has no such secret, capabilities in the metadata API. A store that claims
``MULTIPLE_KEY_VALUES_PER_SECRET`` answers several keys for one secret; the others answer ``{name: value}``.
Each case seeds its own secrets (a fresh file, or environment variables under a fresh prefix), so bulk
answers are exact.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.proto.runtime.v1 import secret_pb2

from tests.grpc.fronts import grpc_front
from tests.sidecar import Sidecar, component_yaml, running_sidecar

MULTI = "MULTIPLE_KEY_VALUES_PER_SECRET"
STORE = "secretstore"
#: Dapr's conformance fixture: two single-valued secrets
DAPR_SECRETS = {"conftestsecret": "abcd", "secondsecret": "efgh"}

#: a JSON-like document of secrets: a value, or (nested) objects of values
Document = Mapping[str, Any]
#: seeds ``document`` where the store will read it; returns the component's metadata
Seed = Callable[[Path, pytest.MonkeyPatch, Document], dict[str, str]]


def in_file(**extra: str) -> Seed:
    def seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, document: Document) -> dict[str, str]:
        path = tmp_path / "secrets.json"
        path.write_text(json.dumps(document))
        return {"secretsFile": str(path), **extra}

    return seed


def in_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, document: Document) -> dict[str, str]:
    """Variables under a fresh prefix, so only this test's secrets are in the store (the process has others)."""
    prefix = f"CONFTEST_{uuid.uuid4().hex[:8].upper()}_"
    for name, value in document.items():
        assert isinstance(value, str), "the environment holds flat values only"
        monkeypatch.setenv(prefix + name, value)
    return {"prefix": prefix}


@dataclass(frozen=True)
class SecretCase:
    component_type: str
    features: frozenset[str]
    seed: Seed
    nested: bool = True  # the store reads nested objects (a file does; the environment is flat)


CASES = {
    "local.file": SecretCase("secretstores.local.file", frozenset(), in_file()),
    "local.file-multivalued": SecretCase("secretstores.local.file", frozenset({MULTI}), in_file(multiValued="true")),
    "local.env": SecretCase("secretstores.local.env", frozenset(), in_environment, nested=False),
}
COMPONENT_TYPES = frozenset(case.component_type for case in CASES.values())


@dataclass
class Secrets:
    case: SecretCase
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch

    @contextlib.asynccontextmanager
    async def serving(self, document: Document) -> AsyncIterator[Sidecar]:
        """A sidecar whose one secret store holds ``document``."""
        metadata = self.case.seed(self.tmp_path, self.monkeypatch, document)
        (self.tmp_path / "secretstore.yaml").write_text(component_yaml(STORE, self.case.component_type, metadata))
        async with running_sidecar(self.tmp_path) as sidecar:
            yield sidecar


@pytest.fixture(params=list(CASES))
def secrets(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Secrets:
    return Secrets(CASES[request.param], tmp_path, monkeypatch)


async def test_dapr_get_and_bulk_get(secrets: Secrets) -> None:
    async with secrets.serving(DAPR_SECRETS) as sidecar:
        one = await sidecar.client.get(f"/v1.0/secrets/{STORE}/conftestsecret")
        bulk = await sidecar.client.get(f"/v1.0/secrets/{STORE}/bulk")
    assert one.status_code == 200 and one.headers["content-type"] == "application/json"
    assert one.json() == {"conftestsecret": "abcd"}
    assert bulk.status_code == 200
    assert bulk.json() == {"conftestsecret": {"conftestsecret": "abcd"}, "secondsecret": {"secondsecret": "efgh"}}


async def test_metadata_query_parameters_are_accepted(secrets: Secrets) -> None:
    async with secrets.serving(DAPR_SECRETS) as sidecar:
        one = await sidecar.client.get(f"/v1.0/secrets/{STORE}/secondsecret", params={"metadata.version_id": "1"})
        bulk = await sidecar.client.get(f"/v1.0/secrets/{STORE}/bulk", params={"metadata.namespace": "x"})
    assert one.status_code == 200 and one.json() == {"secondsecret": "efgh"}
    assert bulk.status_code == 200 and set(bulk.json()) == set(DAPR_SECRETS)


async def test_a_missing_secret_is_err_secret_get(secrets: Secrets) -> None:
    async with secrets.serving(DAPR_SECRETS) as sidecar:
        response = await sidecar.client.get(f"/v1.0/secrets/{STORE}/nosuchsecret")
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_SECRET_GET",
        "message": f"failed getting secret with key nosuchsecret from secret store {STORE}: secret nosuchsecret not found",
    }


async def test_an_unknown_store_is_401(secrets: Secrets) -> None:
    async with secrets.serving(DAPR_SECRETS) as sidecar:
        for path in ("/v1.0/secrets/nostore/conftestsecret", "/v1.0/secrets/nostore/bulk"):
            response = await sidecar.client.get(path)
            assert response.status_code == 401, path
            assert response.json() == {
                "errorCode": "ERR_SECRET_STORE_NOT_FOUND",
                "message": "failed finding secret store with key nostore",
            }


async def test_a_secret_named_bulk_is_only_in_the_bulk_answer(secrets: Secrets) -> None:
    """Dapr matches ``bulk`` before ``{name}``, so the name ``bulk`` always means the bulk get."""
    async with secrets.serving({"bulk": "b", "other": "o"}) as sidecar:
        response = await sidecar.client.get(f"/v1.0/secrets/{STORE}/bulk")
    assert response.json() == {"bulk": {"bulk": "b"}, "other": {"other": "o"}}


async def test_metadata_reports_exactly_the_claimed_features(secrets: Secrets) -> None:
    async with secrets.serving(DAPR_SECRETS) as sidecar:
        components = (await sidecar.client.get("/v1.0/metadata")).json()["components"]
    (component,) = [c for c in components if c["name"] == STORE]
    assert component["type"] == secrets.case.component_type
    assert set(component.get("capabilities", [])) == set(secrets.case.features)


async def test_several_keys_per_secret_only_where_claimed(secrets: Secrets) -> None:
    if not secrets.case.nested:
        pytest.skip("the store holds flat values only")
    document = {"db": {"user": "admin", "password": "pw"}, "token": "t"}
    async with secrets.serving(document) as sidecar:
        bulk = (await sidecar.client.get(f"/v1.0/secrets/{STORE}/bulk")).json()
        db = await sidecar.client.get(f"/v1.0/secrets/{STORE}/db")
        password = await sidecar.client.get(f"/v1.0/secrets/{STORE}/db:password")
    if MULTI in secrets.case.features:
        assert bulk == {"db": {"user": "admin", "password": "pw"}, "token": {"token": "t"}}
        assert db.status_code == 200 and db.json() == {"user": "admin", "password": "pw"}
        assert password.status_code == 500
    else:
        assert bulk == {"db:user": {"db:user": "admin"}, "db:password": {"db:password": "pw"}, "token": {"token": "t"}}
        assert all(list(secret) == [name] for name, secret in bulk.items())
        assert db.status_code == 500
        assert password.status_code == 200 and password.json() == {"db:password": "pw"}


# -- the gRPC front: GetSecret and GetBulkSecret on the same stores ---------------------------------------------


async def test_grpc_get_bulk_get_and_mistakes(secrets: Secrets) -> None:
    metadata = secrets.case.seed(secrets.tmp_path, secrets.monkeypatch, DAPR_SECRETS)
    (secrets.tmp_path / "secretstore.yaml").write_text(component_yaml(STORE, secrets.case.component_type, metadata))
    async with running_sidecar(secrets.tmp_path, grpc=True) as sidecar, grpc_front(sidecar) as front:
        one = await front.dapr.GetSecret(secret_pb2.GetSecretRequest(store_name=STORE, key="conftestsecret"))
        assert dict(one.data) == {"conftestsecret": "abcd"}
        bulk = await front.dapr.GetBulkSecret(secret_pb2.GetBulkSecretRequest(store_name=STORE))
        assert {name: dict(secret.secrets) for name, secret in bulk.data.items()} == {
            "conftestsecret": {"conftestsecret": "abcd"},
            "secondsecret": {"secondsecret": "efgh"},
        }
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await front.dapr.GetSecret(secret_pb2.GetSecretRequest(store_name=STORE, key="nosuchsecret"))
        assert missing.value.code() == grpc.StatusCode.INTERNAL  # the store has no such secret: Dapr's 500
        assert missing.value.details() == (
            f"failed getting secret with key nosuchsecret from secret store {STORE}: secret nosuchsecret not found"
        )
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await front.dapr.GetSecret(secret_pb2.GetSecretRequest(store_name="nostore", key="conftestsecret"))
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert unknown.value.details() == "failed finding secret store with key nostore"
