"""``spec.httpPipeline`` with ``middleware.http.*`` components, against real sidecar processes: handlers run
in order, a handler without its component is skipped; ratelimit (429 and tollbooth's headers),
routerchecker (400 ``invalid router``), sentinel (QPS and concurrency, 429), bearer (JWTs against a JWKS
the test serves, found through the issuer's OpenID configuration)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from building_blocks.errors import SpecError
from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy
from tests.governance.test_app_channel_limits import App, serving
from tests.sidecar import component_yaml

WAIT = 60.0


def _middleware(name: str, kind: str, metadata: dict[str, str]) -> str:
    return component_yaml(name, kind, metadata)


def _config(handlers: list[tuple[str, str]]) -> str:
    items = "".join(f"\n      - {{name: {name}, type: {kind}}}" for name, kind in handlers)
    return f"apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {{name: pipeline}}\nspec:\n  httpPipeline:\n    handlers:{items}\n"


class Sidecar:
    def __init__(self, tmp_path: Path, components: dict[str, str], config: str, *flags: str) -> None:
        self.folder = tmp_path / "resources"
        self.folder.mkdir(exist_ok=True)
        (self.folder / "state.yaml").write_text(component_yaml("statestore", "state.in-memory"))
        for name, text in components.items():
            (self.folder / f"{name}.yaml").write_text(text)
        (tmp_path / "config.yaml").write_text(config)
        self.port = free_port()
        self.process = layotto(
            "--app-id", "piped", "--dapr-http-port", str(self.port), "--resources-path", str(self.folder),
            "--config", str(tmp_path / "config.yaml"), "--log-level", "info", *flags,
        )  # fmt: skip
        self.health_headers: dict[str, str] | None = None

    def __enter__(self) -> httpx.Client:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=WAIT)
        if self.health_headers is None:
            wait_healthy(self.port, WAIT, self.process)
            return self.client
        # the pipeline guards health too (as daprd's): poll it as an authorised client would
        deadline = time.monotonic() + WAIT
        while True:
            assert self.process.poll() is None, self.process.communicate()[1]
            assert time.monotonic() < deadline, "the sidecar never answered /v1.0/healthz"
            try:
                if self.client.get("/v1.0/healthz", headers=self.health_headers).status_code == 204:
                    return self.client
            except httpx.TransportError:
                pass
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        code, stderr = stop(self.process)
        assert code == 0, stderr
        self.stderr = stderr


def test_ratelimit_and_routerchecker_in_order_and_a_handler_without_component_skipped(tmp_path: Path) -> None:
    components = {
        "limit": _middleware("limit", "middleware.http.ratelimit", {"maxRequestsPerSecond": "0.2"}),
        "checker": _middleware("checker", "middleware.http.routerchecker", {"rule": "^[A-Za-z0-9/._-]+$"}),
    }
    handlers = [
        ("checker", "middleware.http.routerchecker"),
        ("ghost", "middleware.http.ratelimit"),
        ("limit", "middleware.http.ratelimit"),
    ]
    sidecar = Sidecar(tmp_path, components, _config(handlers))
    with sidecar as client:
        bad = client.get("/v1.0/state/statestore/a%20b")
        assert (bad.status_code, bad.text, bad.headers["content-type"]) == (
            400,
            "invalid router",
            "text/plain; charset=utf-8",
        )
        assert "ratelimit-limit" not in bad.headers  # the checker runs first and answers
        first = client.get("/v1.0/state/statestore/k")
        assert first.status_code == 204
        assert first.headers["x-rate-limit-limit"] == "0.20"
        assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("0", "0")
        assert first.headers["x-rate-limit-request-remote-addr"].startswith("127.0.0.1:")
        limited = client.get("/v1.0/state/statestore/k", headers={"x-forwarded-for": "10.1.2.3"})
        assert (limited.status_code, limited.text) == (429, "You have reached maximum request limit.")
        assert limited.headers["x-rate-limit-request-forwarded-for"] == "10.1.2.3"  # reported, not trusted
        assert client.get("/v1.0/state/statestore/other").status_code == 204  # per path
        assert client.post("/v1.0/state/statestore", json=[]).status_code == 204
    assert "HTTP pipeline handler ghost (middleware.http.ratelimit) has no matching component" in sidecar.stderr


def test_sentinel_qps_and_concurrency(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = App()
        async with serving(app) as app_port:
            flow = [{"resource": "GET:/v1.0/state/statestore/k", "threshold": 0.1, "statIntervalInMs": 10000}]
            isolation = [{"resource": "POST:/v1.0/invoke/piped/method/slow", "metricType": 0, "threshold": 1}]
            metadata = {"appName": "piped", "flowRules": json.dumps(flow), "isolationRules": json.dumps(isolation)}
            components = {"sentinel": _middleware("sentinel", "middleware.http.sentinel", metadata)}
            sidecar = Sidecar(
                tmp_path, components, _config([("sentinel", "middleware.http.sentinel")]), "--app-port", str(app_port)
            )
            with sidecar as client:
                assert client.get("/v1.0/state/statestore/k").status_code == 204
                blocked = client.get("/v1.0/state/statestore/k")
                assert (blocked.status_code, blocked.text) == (429, "Too Many Requests")
                assert client.get("/v1.0/state/statestore/other").status_code == 204  # another resource
                listed = {c["name"]: c["type"] for c in client.get("/v1.0/metadata").json()["components"]}
                assert listed["sentinel"] == "middleware.http.sentinel"  # listed as daprd lists middleware
                async with httpx.AsyncClient(base_url=client.base_url, timeout=WAIT) as concurrent:
                    first = asyncio.create_task(concurrent.post("/v1.0/invoke/piped/method/slow", content=b"1"))
                    while not app.paths("/slow"):  # the first call is in the app
                        await asyncio.sleep(0.01)
                    second = await concurrent.post("/v1.0/invoke/piped/method/slow", content=b"2")
                    assert (second.status_code, second.text) == (429, "Too Many Requests")
                    assert (await first).status_code == 200
                    assert (await concurrent.post("/v1.0/invoke/piped/method/slow")).status_code == 200

    App.SLOW = 1.0
    try:
        asyncio.run(scenario())
    finally:
        App.SLOW = 0.3


# -- bearer ----------------------------------------------------------------------------------------------------


class _Issuer:
    """An OpenID issuer on a free port: its configuration document and its JWKS (one RSA key)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body: dict[str, Any]
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    body = issuer.jwks
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "aud": "my-app", "sub": "alice", "iat": now, "exp": now + 600, **claims}
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def issuer() -> Iterator[_Issuer]:
    served = _Issuer()
    yield served
    served.server.shutdown()
    served.server.server_close()


def test_bearer_validates_tokens_against_the_issuers_jwks(tmp_path: Path, issuer: _Issuer) -> None:
    metadata = {"issuerURL": issuer.url, "clientID": "my-app"}  # the aliases; the JWKS found by discovery
    components = {"auth": _middleware("auth", "middleware.http.bearer", metadata)}
    sidecar = Sidecar(tmp_path, components, _config([("auth", "middleware.http.bearer")]))
    sidecar.health_headers = {"authorization": f"Bearer {issuer.token()}"}
    with sidecar as client:
        assert client.get("/v1.0/healthz").status_code == 401  # health too, as daprd's pipeline

        def status(authorization: str | None) -> int:
            headers = {"authorization": authorization} if authorization is not None else {}
            answer = client.get("/v1.0/state/statestore/k", headers=headers)
            if answer.status_code == 401:
                assert answer.text == "Unauthorized"
            return answer.status_code

        assert status(f"Bearer {issuer.token()}") == 204
        assert status(f"bearer {issuer.token()}") == 204  # the scheme is case-insensitive
        assert status(None) == 401
        assert status(f"Basic {issuer.token()}") == 401
        assert status("Bearer short") == 401
        assert status(f"Bearer {issuer.token(aud='other')}") == 401
        assert status(f"Bearer {issuer.token(iss='http://evil')}") == 401
        assert status(f"Bearer {issuer.token(exp=int(time.time()) - 3600)}") == 401
        assert status(f"Bearer {issuer.token(exp=int(time.time()) - 60)}") == 204  # within the 5 min skew
        unsigned = jwt.encode({"iss": issuer.url, "aud": "my-app"}, "", algorithm="none")
        assert status(f"Bearer {unsigned}") == 401
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode({"iss": issuer.url, "aud": "my-app"}, other, algorithm="RS256", headers={"kid": "k1"})
        assert status(f"Bearer {forged}") == 401
        assert status(f"Bearer {issuer.token()[:-4]}AAAA") == 401
        assert status("Bearer " + "x" * 100_000) in (401, 431)


def test_a_middleware_that_cannot_run_stops_start_up_with_one_line(tmp_path: Path) -> None:
    metadata = {"maxRequestsPerSecond": "-1"}
    pipeline = "httpPipeline"
    expected = (
        "component 'limit' (middleware.http.ratelimit): metadata property maxRequestsPerSecond must be a positive value"
    )
    (tmp_path / "limit.yaml").write_text(_middleware("limit", "middleware.http.ratelimit", metadata))
    config = _config([("limit", "middleware.http.ratelimit")]).replace("httpPipeline", pipeline)
    (tmp_path / "config.yaml").write_text(config)
    process = layotto(
        "--app-id", "bad", "--dapr-http-port", str(free_port()), "--resources-path", str(tmp_path),
        "--config", str(tmp_path / "config.yaml"),
    )  # fmt: skip
    _, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("layotto: ")]
    assert len(errors) == 1 and expected in errors[0], stderr
    assert "Traceback" not in stderr


def test_the_app_pipeline_runs_around_calls_into_the_app(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = App()
        async with serving(app) as app_port:
            components = {
                "checker": _middleware("checker", "middleware.http.routerchecker", {"rule": "^/(slow|dapr/)"}),
                "limit": _middleware("limit", "middleware.http.ratelimit", {"maxRequestsPerSecond": "0.2"}),
            }
            handlers = [("checker", "middleware.http.routerchecker"), ("limit", "middleware.http.ratelimit")]
            config = _config(handlers).replace("httpPipeline", "appHttpPipeline")
            with Sidecar(tmp_path, components, config, "--app-port", str(app_port)) as sync:
                # the app answers on this loop: the calls that reach it are made without blocking it
                async with httpx.AsyncClient(base_url=sync.base_url, timeout=WAIT) as client:
                    first = await client.post("/v1.0/invoke/piped/method/slow", content=b"1")
                    assert first.status_code == 200 and first.headers["ratelimit-limit"] == "0"
                    limited = await client.post("/v1.0/invoke/piped/method/slow", content=b"2")
                    assert (limited.status_code, limited.text) == (429, "You have reached maximum request limit.")
                    refused = await client.get("/v1.0/invoke/piped/method/elsewhere")
                    assert (refused.status_code, refused.text) == (400, "invalid router")
                    assert (await client.get("/v1.0/state/statestore/k")).status_code == 204  # no API pipeline
        assert app.paths("/slow") == [""] and not app.paths("/elsewhere")  # refused calls never reached it

    asyncio.run(scenario())


def test_the_rate_limit_table_stays_bounded_and_keeps_recent_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.governance import ratelimit

    monkeypatch.setattr(ratelimit, "MAX_BUCKETS", 20)
    limit = ratelimit.RateLimit(0.001)  # one token, refilled in ~17 minutes: nothing refills during the test
    for index in range(500):  # a client walking through many paths
        assert limit._take(f"10.0.0.1|/{index}") == (True, 0)
        assert len(limit.buckets) <= 20
    assert limit._take("10.0.0.1|/499") == (False, 0)  # the recent bucket was kept, still empty


def test_sentinel_throttling_spaces_requests_and_refuses_beyond_the_queueing_time() -> None:
    from app.governance.pipeline import MiddlewareSpec
    from app.governance.sentinel import parse

    rules = [{"resource": "GET:/x", "threshold": 1, "controlBehavior": 1, "maxQueueingTimeMs": 1500}]
    spec = MiddlewareSpec("s", "middleware.http.sentinel", "v1", {"flowRules": json.dumps(rules)}, "s.yaml")
    (flow,) = parse(spec)["GET:/x"].flows

    async def three() -> tuple[list[bool], float]:
        started = time.monotonic()
        admitted = await asyncio.gather(flow.admit(), flow.admit(), flow.admit())
        return list(admitted), time.monotonic() - started

    admitted, took = asyncio.run(three())
    assert admitted == [True, True, False]  # one per second: the third would wait 2 s > 1.5 s
    assert took >= 0.99  # the second waited its turn
    for bad in ({"tokenCalculateStrategy": 1}, {"controlBehavior": 2}, {"threshold": -1}, {"resource": ""}):
        broken = MiddlewareSpec("s", "t", "v1", {"flowRules": json.dumps([{"resource": "r", **bad}])}, "s.yaml")
        with pytest.raises(SpecError, match=r"^s\.yaml: "):
            parse(broken)


def test_bearer_metadata_is_checked_at_start_up(issuer: _Issuer) -> None:
    from app.governance.bearer import Bearer, create
    from app.governance.pipeline import MiddlewareSpec

    def spec(**metadata: str) -> MiddlewareSpec:
        return MiddlewareSpec("auth", "middleware.http.bearer", "v1", metadata, "auth.yaml")

    explicit = asyncio.run(create(spec(issuer=issuer.url, audience="my-app", jwksURL=f"{issuer.url}/jwks")))
    assert isinstance(explicit, Bearer) and set(explicit.keys) == {"k1"}
    for metadata, problem in (
        ({"audience": "my-app"}, "metadata property 'issuer' is required"),
        ({"issuer": issuer.url}, "metadata property 'audience' is required"),
        ({"issuer": issuer.url + "/", "audience": "a"}, "doesn't match the one provided"),
        ({"issuer": issuer.url, "audience": "a", "jwksURL": f"{issuer.url}/missing"}, "failed to fetch JWKS"),
    ):
        with pytest.raises(SpecError, match=r"^auth\.yaml: ") as refused:
            asyncio.run(create(spec(**metadata)))
        assert problem in str(refused.value) and "\n" not in str(refused.value)
