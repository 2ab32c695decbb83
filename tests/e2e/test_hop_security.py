"""The sidecar-to-sidecar hop, attacked over HTTP against real sidecar processes.

* a client can never choose the caller identity an app sees: forged ``dapr-caller-app-id`` (and the other
  identity headers, and the old ``layotto-internal-invoke`` marker) on any public port, in every request
  form, are replaced by the sidecar's own knowledge;
* the hop never carries the app's API token: sidecars with different tokens call each other, and a fake
  "sidecar" registered in the name registry receives no token of the app;
* the internal port admits only hops with the deployment's credentials: the hop secret, or a client
  certificate signed by the deployment's CA (mutual TLS).
"""

from __future__ import annotations

import base64
import http.server
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import free_port, layotto
from tests.e2e.test_invoke_processes import Node, ready, start

FORGED = {
    "dapr-caller-app-id": "admin-app",
    "dapr-caller-namespace": "kube-system",
    "dapr-callee-app-id": "forged-callee",
    "layotto-internal-invoke": "1",
}


def seen_headers(answer: httpx.Response) -> dict[str, list[str]]:
    """The headers the echo app received, as it answered them."""
    assert answer.status_code == 200, answer.text
    headers: dict[str, list[str]] = {}
    for name, value in answer.json()["headers"]:
        headers.setdefault(name, []).append(value)
    return headers


def identity(answer: httpx.Response) -> tuple[list[str], list[str], list[str]]:
    headers = seen_headers(answer)
    assert "layotto-internal-invoke" not in headers and "layotto-internal-token" not in headers
    return headers["dapr-caller-app-id"], headers["dapr-caller-namespace"], headers["dapr-callee-app-id"]


def basic(app_id: str) -> str:
    return "Basic " + base64.b64encode(f"dapr-app-id:{app_id}".encode()).decode()


def forms(node: Node, target: str) -> Iterator[httpx.Response]:
    """The same forged call to ``target`` through ``node``'s public port, in Dapr's three request forms."""
    yield node.invoke(target, "echo", headers=FORGED)
    yield node.client.get(f"{node.base}/echo", headers={**FORGED, "dapr-app-id": target})
    yield node.client.get(f"{node.base}/echo", headers={**FORGED, "authorization": basic(target)})


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node, Path]]:
    """alpha and beta on the embedded default, each with its own API token, and their HOME."""
    home = tmp_path_factory.mktemp("home")
    alpha = start("alpha", {"HOME": str(home), "DAPR_API_TOKEN": "alpha-token"}, "-I", str(free_port()))
    beta = start("beta", {"HOME": str(home), "DAPR_API_TOKEN": "beta-token"}, "-I", str(free_port()))
    try:
        ready(alpha, beta)
        yield alpha, beta, home
    finally:
        alpha.close()
        beta.close()


def internal_port(node: Node) -> int:
    args = node.process.args
    assert isinstance(args, list)
    return int(args[args.index("-I") + 1])


def test_forged_identity_never_reaches_an_app(mesh: tuple[Node, Node, Path]) -> None:
    alpha, beta, home = mesh
    for answer in forms(alpha, "beta"):  # another app, through the caller's own sidecar
        assert identity(answer) == (["alpha"], ["default"], ["beta"])
    for answer in forms(beta, "beta"):  # straight to the callee's sidecar: a self-invocation
        assert identity(answer) == (["beta"], ["default"], ["beta"])
    for answer in forms(alpha, "alpha"):
        assert identity(answer) == (["alpha"], ["default"], ["alpha"])
    # even a client that holds the hop secret cannot use the public port as the hop
    secret = (home / ".layotto" / "internal-token").read_text().strip()
    answer = alpha.invoke("beta", "echo", headers={**FORGED, "layotto-internal-token": secret})
    assert identity(answer) == (["alpha"], ["default"], ["beta"])


def test_sidecars_with_different_api_tokens_call_each_other_and_tokens_stay_home(
    mesh: tuple[Node, Node, Path],
) -> None:
    alpha, beta, _ = mesh
    for caller, callee in ((alpha, beta), (beta, alpha)):
        headers = seen_headers(caller.invoke(callee.app_id, "echo", "POST", content=b"hi"))
        values = [value for values in headers.values() for value in values]
        assert "dapr-api-token" not in headers
        assert not any("token" in value for value in values), headers  # neither sidecar's token
        assert (headers["dapr-caller-app-id"], headers["dapr-callee-app-id"]) == ([caller.app_id], [callee.app_id])


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A plain HTTP server posing as a sidecar: it keeps every request's headers."""

    received: list[list[tuple[str, str]]] = []

    def _record(self) -> None:
        self.received.append(list(self.headers.items()))
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = _record

    def log_message(self, *args: object) -> None:
        pass


def register(home: Path, app_id: str, address: str) -> None:
    """Forge a row of the embedded name registry (fresh for an hour: no heartbeat needed)."""
    with sqlite3.connect(home / ".layotto" / "data" / "nameresolution.db") as db:
        db.execute(
            "INSERT INTO hosts (registration_id, address, app_id, namespace, last_update) VALUES (?, ?, ?, ?, ?)",
            (str(uuid.uuid4()), address, app_id, "default", time.time() + 3600),
        )


def test_a_fake_sidecar_in_the_registry_never_receives_the_apps_token(mesh: tuple[Node, Node, Path]) -> None:
    alpha, _, home = mesh
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ghost = f"ghost-{uuid.uuid4().hex[:8]}"
        register(home, ghost, f"127.0.0.1:{server.server_address[1]}")
        answer = alpha.invoke(ghost, "steal", "POST", content=b"x")
        assert (answer.status_code, answer.content) == (200, b"ok")
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Recorder.received) == 1
    received = dict(_Recorder.received[0])
    assert "dapr-api-token" not in {name.lower() for name in received}
    assert not any("alpha-token" in value for value in received.values()), received


def test_the_internal_port_refuses_hops_without_the_secret_and_serves_nothing_else(
    mesh: tuple[Node, Node, Path],
) -> None:
    _, beta, home = mesh
    hop = f"http://127.0.0.1:{internal_port(beta)}"
    path = "/v1.0/invoke/beta/method/echo"
    with httpx.Client(trust_env=False, timeout=30) as client:
        for token in ({}, {"layotto-internal-token": "guess"}, {"dapr-api-token": "beta-token"}):
            refused = client.get(hop + path, headers={**FORGED, **token})
            assert refused.status_code == 401, refused.text
        secret = (home / ".layotto" / "internal-token").read_text().strip()
        assert (home / ".layotto" / "internal-token").stat().st_mode & 0o777 == 0o600
        admitted = client.get(hop + path, headers={"layotto-internal-token": secret, "dapr-caller-app-id": "alpha"})
        assert identity(admitted) == (["alpha"], ["default"], ["beta"])  # the authenticated hop says who calls
        for other in ("/v1.0/healthz", "/v1.0/state/statestore/k", "/v1.0/metadata", "/echo"):
            assert client.get(hop + other, headers={"layotto-internal-token": secret}).status_code == 404


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}", cwd=folder)  # fmt: skip


def make_cert(folder: Path, ca: str, name: str) -> None:
    (folder / "leaf.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)  # fmt: skip
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", "leaf.ext", "-out", f"{name}.crt", cwd=folder)  # fmt: skip


def tls_flags(folder: Path, name: str) -> tuple[str, ...]:
    return (
        "--internal-tls-cert-file", str(folder / f"{name}.crt"),
        "--internal-tls-key-file", str(folder / f"{name}.key"),
        "--internal-tls-ca-file", str(folder / "mesh-ca.crt"),
    )  # fmt: skip


def client_context(folder: Path, cert: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=folder / "mesh-ca.crt")
    context.check_hostname = False
    if cert is not None:
        context.load_cert_chain(folder / f"{cert}.crt", folder / f"{cert}.key")
    return context


def test_mutual_tls_between_sidecars_and_clients_without_a_valid_certificate_are_refused(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    make_ca(certs, "mesh-ca")
    make_ca(certs, "rogue-ca")
    for name in ("alpha", "beta"):
        make_cert(certs, "mesh-ca", name)
    make_cert(certs, "rogue-ca", "intruder")
    env = {"HOME": str(tmp_path)}
    ports = {"alpha": free_port(), "beta": free_port()}
    alpha = start("alpha", env, "-I", str(ports["alpha"]), *tls_flags(certs, "alpha"))
    beta = start("beta", env, "-I", str(ports["beta"]), *tls_flags(certs, "beta"))
    try:
        ready(alpha, beta)
        for caller, callee in ((alpha, beta), (beta, alpha)):
            answer = caller.invoke(callee.app_id, "echo", headers=FORGED)
            assert identity(answer) == ([caller.app_id], ["default"], [callee.app_id])
        assert not (tmp_path / ".layotto" / "internal-token").exists()  # mutual TLS alone: no secret needed

        hop = f"https://127.0.0.1:{ports['beta']}/v1.0/invoke/beta/method/echo"
        for cert in (None, "intruder"):  # no client certificate; one from another CA
            context = client_context(certs, cert)
            with (
                httpx.Client(verify=context, trust_env=False, timeout=30) as client,
                pytest.raises(httpx.TransportError),
            ):
                client.get(hop, headers=FORGED)
        with httpx.Client(trust_env=False, timeout=30) as plain, pytest.raises(httpx.TransportError):
            plain.get(hop.replace("https", "http"), headers=FORGED).raise_for_status()
        with httpx.Client(verify=client_context(certs, "alpha"), trust_env=False, timeout=30) as member:
            admitted = member.get(hop, headers={"dapr-caller-app-id": "alpha"})  # a certificate of the mesh
            assert identity(admitted) == (["alpha"], ["default"], ["beta"])
    finally:
        alpha.close()
        beta.close()


def test_a_secret_others_can_read_stops_start_up_and_the_app_never_gets_the_secret(tmp_path: Path) -> None:
    secret = tmp_path / ".layotto" / "internal-token"
    secret.parent.mkdir()
    secret.write_text("0123456789abcdef\n")
    secret.chmod(0o644)
    refused = layotto("--app-id", "lax", "--dapr-http-port", str(free_port()), env={"HOME": str(tmp_path)})
    _, stderr = refused.communicate(timeout=120)
    assert refused.returncode == 1 and f"internal token file {secret}" in stderr and "chmod 600" in stderr, stderr

    probe = "import os, sys; sys.exit(3 if 'LAYOTTO_INTERNAL_TOKEN' in os.environ else 0)"
    env = {"HOME": str(tmp_path), "LAYOTTO_INTERNAL_TOKEN": "stack-secret"}
    app = layotto("--app-id", "probe", "--dapr-http-port", str(free_port()), "--", sys.executable, "-c", probe, env=env)
    _, stderr = app.communicate(timeout=120)
    assert app.returncode == 0, stderr  # the sidecar exits with its app's code
