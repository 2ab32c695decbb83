"""Property-based hostile input over every endpoint family (hypothesis, derandomised so CI is reproducible).

Random methods, raw and percent-encoded paths up to ~10 KB (traversals, bad escapes, non-UTF-8 escapes),
headers and bodies (random bytes, JSON with wrong types, deep nesting, huge numbers) are sent straight into
the sidecar's ASGI front door, exactly as uvicorn would hand them over (``raw_path`` as received, ``path``
percent-decoded), against the embedded default components plus Redis and PostgreSQL state stores.

Invariants: no 5xx except the 500 codes Dapr documents for failures behind the API, never the generic
errorCode ``ERROR``, every request finishes, the sidecar stays healthy, and the data seeded before the run
(in a store no generated path names in plain text, and under keys no generator produces) is unchanged.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.settings import DEFAULT_RESOURCES_PATH
from tests.services import POSTGRES_DSN, require_postgres, require_redis
from tests.sidecar import Sidecar, component_yaml, running_sidecar

T = TypeVar("T")
VAULT = "vault"
SEED_KEY = f"seed-{uuid.uuid4().hex}"
STORES = ["statestore", "redisstore", "pgstore", "pubsub", "lockstore", "sequencer", "configstore", "secretstore"]
#: 500s that are Dapr's answer for a failure behind the API, not for a malformed request: a target app that
#: does not exist, a store without the feature, no app channel, a secret the store does not have.
DOCUMENTED_500 = {"ERR_DIRECT_INVOKE", "ERR_STATE_STORE_NOT_SUPPORTED", "ERR_APP_CHANNEL_NIL", "ERR_SECRET_GET"}
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT", "PURGE", "get"]
TEMPLATES = [
    "/v1.0/state/{store}",
    "/v1.0/state/{store}/{key}",
    "/v1.0/state/{store}/bulk",
    "/v1.0/state/{store}/transaction",
    "/v1.0-alpha1/state/{store}/query",
    "/v1.0/publish/{store}/{key}",
    "/v1.0/publish/bulk/{store}/{key}",
    "/v1.0-alpha1/publish/bulk/{store}/{key}",
    "/v1.0/invoke/{key}/method/{key}",
    "/v1.0/secrets/{store}/{key}",
    "/v1.0/secrets/{store}/bulk",
    "/v1.0-alpha1/lock/{store}",
    "/v1.0-alpha1/unlock/{store}",
    "/v1.0-alpha1/lock/{store}/renew",
    "/v1.0-alpha1/sequencer/{store}",
    "/v1.0/configuration/{store}",
    "/v1.0-alpha1/configuration/{store}",
    "/v1.0/configuration/{store}/subscribe",
    "/v1.0-alpha1/configuration/{store}/{key}/unsubscribe",
    "/v1.0/metadata",
    "/v1.0/metadata/{key}",
    "/v1.0/healthz",
    "/v1.0/healthz/outbound",
    "/actuator/health/{key}",
    "/actuator/info",
    "/{key}",
    "/{key}/{key}/{key}",
]
TRAVERSALS = [
    "..",
    ".",
    "",
    "%2e%2e",
    "%2E.",
    "..%2F",
    "%2F",
    "%2f%2f",
    "%5C..%5C",
    f"..%2F..%2F{VAULT}%2F{SEED_KEY}",
    f"z%2F..%2F..%2F{VAULT}%2F{SEED_KEY}",
    f"{{store}}%2F..%2F{VAULT}",
    f"%2e%2e%2F{VAULT}",
    "..%2F..%2F..%2F..%2Fv1.0%2Fshutdown",
    "%ff",
    "%c0%af",
    "%zz",
    "%",
    "%2",
    "+",
    "%00",
    "%0d%0a",
    "a" * 3000,
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
raw_numbers = st.sampled_from([b"99999999999999999999999999", b"1e400", b"-1e400", b"-0", b"1E-400", b"0.1e99999"])


@st.composite
def deep_json(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=200, max_value=3000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    return opener * depth + draw(raw_numbers | st.just(b"1")) + closer * depth


#: A valid body of each family, so mutations reach past the first parse.
VALID_BODIES: list[Any] = [
    [
        {
            "key": "k",
            "value": {"a": 1},
            "etag": "1",
            "options": {"concurrency": "first-write"},
            "metadata": {"ttlInSeconds": "9"},
        }
    ],
    {"keys": ["k", "j"], "parallelism": 2},
    {"operations": [{"operation": "upsert", "request": {"key": "k", "value": 1}}], "metadata": {}},
    {"filter": {"EQ": {"a": 1}}, "sort": [{"key": "a", "order": "DESC"}], "page": {"limit": 2, "token": "1"}},
    [{"entryId": "1", "event": {"a": 1}, "contentType": "application/json", "metadata": {"ttlInSeconds": "9"}}],
    {"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 5},
    {"key": "k", "options": {"increment": "WEAK"}, "metadata": {}},
    {"items": [{"key": "k", "value": "v", "group": "g", "label": "l", "tags": {"a": "b"}}], "metadata": {}},
]


@st.composite
def mutated_body(draw: st.DrawFn) -> bytes:
    """A valid body with one value somewhere replaced by a random JSON value."""
    body = json.loads(json.dumps(draw(st.sampled_from(VALID_BODIES))))
    node: Any = body
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if not isinstance(node[key], dict | list) or draw(st.booleans()):
                node[key] = draw(json_values)
                break
            node = node[key]
        elif isinstance(node, list) and node:
            index = draw(st.integers(min_value=0, max_value=len(node) - 1))
            if not isinstance(node[index], dict | list) or draw(st.booleans()):
                node[index] = draw(json_values)
                break
            node = node[index]
    text = json.dumps(body).encode()
    if draw(st.booleans()):  # a huge number where a value was
        text = text.replace(b"1", draw(raw_numbers), 1)
    return text


bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=512),
    json_values.map(lambda value: json.dumps(value).encode()),
    mutated_body(),
    deep_json(),
)


@st.composite
def segments(draw: st.DrawFn, kind: str) -> str:
    choice = draw(st.integers(min_value=0, max_value=3))
    if choice == 0 and kind == "store":
        return draw(st.sampled_from(STORES))
    if choice == 1:
        return draw(st.sampled_from(TRAVERSALS)).replace("{store}", draw(st.sampled_from(STORES)))
    if choice == 2:
        text = draw(st.text(min_size=1, max_size=draw(st.sampled_from([8, 64, 2500]))))
        return quote(text, safe=draw(st.sampled_from(["", "/", "/.%", "-_~"])))
    parts = draw(st.lists(st.sampled_from([*TRAVERSALS[:14], "k", "statestore", "a.b"]), min_size=1, max_size=4))
    return "/".join(parts).replace("{store}", "statestore")


@st.composite
def paths(draw: st.DrawFn) -> str:
    template = draw(st.sampled_from(TEMPLATES))
    path = template
    while "{store}" in path or "{key}" in path:
        kind = "store" if path.index("{") == path.find("{store}") else "key"
        path = path.replace("{" + kind + "}", draw(segments(kind)), 1)
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        path = draw(st.sampled_from(["//", "/./", "/"])) + path.lstrip("/") + draw(st.sampled_from(["", "/", "//"]))
    return "".join(c for c in path if 0x20 < ord(c) < 0x7F and c not in "?#")  # what a request line can carry


header_values = st.one_of(
    st.sampled_from(
        [
            b"application/json",
            b"text/plain",
            b"application/cloudevents+json",
            b"application/octet-stream",
            b"multipart/form-data; boundary=x",
            b"",
            b"\xff\xfe",
            b"Basic ZGFwci1hcHAtaWQ6b3RoZXI=",
            b"Basic !!!",
            b"00-00000000000000000000000000000000-0000000000000000-00",
            b"1",
            b"-1",
            b"99999999999999999999",
        ]
    ),
    st.binary(max_size=64).map(lambda value: value.replace(b"\r", b"").replace(b"\n", b"")),
)
header_names = st.sampled_from(
    [
        b"content-type",
        b"if-match",
        b"dapr-app-id",
        b"authorization",
        b"traceparent",
        b"tracestate",
        b"dapr-caller-app-id",
        b"layotto-internal-invoke",
        b"dapr-force-shutdown",
        b"accept",
        b"expect",
        b"x-random",
    ]
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    chunked: bool


#: Paths that reached the seeded key of another store before the front door routed encoded paths.
ATTACKS = [
    f"/v1.0/state/{{store}}/z%2F..%2F..%2F{VAULT}%2F{SEED_KEY}",
    f"/v1.0/state/{{store}}/..%2F{VAULT}%2F{SEED_KEY}",
    f"/v1.0/state/{{store}}%2F..%2F{VAULT}/{SEED_KEY}",
    f"/v1.0/state/{{store}}/%2e%2e/{VAULT}/{SEED_KEY}",
    f"/v1.0/state/{{store}}/%2E%2E/%2E%2E/v1.0/state/{VAULT}/{SEED_KEY}",
    f"/v1.0/invoke/{{store}}/method/..%2F..%2F..%2F..%2Fv1.0%2Fstate%2F{VAULT}%2F{SEED_KEY}",
    f"/v1.0/invoke/{{store}}/method/%2e%2e/%2e%2e/%2e%2e/%2e%2e/v1.0/state/{VAULT}/{SEED_KEY}",
    f"/v1.0/publish/{{store}}/..%2F..%2F..%2Fstate%2F{VAULT}%2F{SEED_KEY}",
    f"/v1.0/secrets/{{store}}/..%2F..%2Fstate%2F{VAULT}%2F{SEED_KEY}",
]


@st.composite
def attacks(draw: st.DrawFn) -> Request:
    """A traversal aimed at the seeded key, with a verb that would read, overwrite or delete it."""
    path = draw(st.sampled_from(ATTACKS)).replace("{store}", draw(st.sampled_from(STORES)))
    body = draw(st.sampled_from([b"", orjson.dumps([{"key": SEED_KEY, "value": "overwritten"}])]))
    return Request(draw(st.sampled_from(["DELETE", "GET", "POST", "PUT"])), path, b"", (), body, False)


@st.composite
def random_requests(draw: st.DrawFn) -> Request:
    query = draw(
        st.sampled_from(
            [
                b"",
                b"consistency=bogus",
                b"concurrency=x&consistency=strong",
                b"metadata.ttlInSeconds=99999999999999999999",
                b"metadata.ttlInSeconds=-5",
                b"metadata.rawPayload=maybe",
                b"metadata.contentType=%ff",
                b"key=a&key=%ff&key=",
                b"metadata.=x&metadata",
                b"%zz=%zz",
            ]
        )
    )
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=4))
    return Request(
        method=draw(st.sampled_from(METHODS)),
        path=draw(paths()),
        query=query,
        headers=tuple(headers),
        body=draw(bodies),
        chunked=draw(st.booleans()),
    )


class LoopThread:
    """An event loop on its own thread, hosting the sidecar while hypothesis drives it synchronously."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()  # else its self-pipe sockets and the loop itself leak (ResourceWarning, an error here)


async def _asgi(sidecar: Sidecar, request: Request) -> tuple[int, bytes]:
    """One request into the ASGI app, framed as uvicorn frames it."""
    app: Callable[..., Awaitable[None]] = sidecar.client._transport.app  # type: ignore[attr-defined]
    raw_path = request.path.encode("ascii")
    headers = [(b"host", b"sidecar"), *request.headers]
    if request.chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    else:
        headers.append((b"content-length", str(len(request.body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 3500),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "root_path": "",
        "method": request.method,
        "path": unquote(request.path),
        "raw_path": raw_path,
        "query_string": request.query,
        "headers": headers,
        "state": {},
    }
    done = asyncio.Event()
    chunks = [request.body[i : i + 300] for i in range(0, len(request.body), 300)] or [b""]
    status = 0
    body = bytearray()

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    await asyncio.wait_for(app(scope, receive, send), 30)
    return status, bytes(body)


def _resources(folder: Path) -> Path:
    shutil.copytree(DEFAULT_RESOURCES_PATH, folder, ignore=shutil.ignore_patterns("redis", "postgresql"))
    for spec in folder.glob("*.yaml"):
        spec.write_text(spec.read_text().replace("~/.layotto/data", str(folder)))
    (folder / "vault.yaml").write_text(component_yaml(VAULT, "state.in-memory"))
    (folder / "redis.yaml").write_text(component_yaml("redisstore", "state.redis", {"redisHost": require_redis()}))
    require_postgres()
    table = f"hostile_{uuid.uuid4().hex[:8]}"
    (folder / "pg.yaml").write_text(
        component_yaml("pgstore", "state.postgresql", {"connectionString": POSTGRES_DSN, "tableName": table})
    )
    (folder / "secrets.json").write_text(json.dumps({"db": {"password": "pw"}, "token": "abc"}))
    metadata = {"secretsFile": str(folder / "secrets.json"), "nestedSeparator": ":"}
    (folder / "secretstore.yaml").write_text(component_yaml("secretstore", "secretstores.local.file", metadata))
    return folder


@dataclass
class Harness:
    loop: LoopThread
    sidecar: Sidecar

    def send(self, request: Request) -> tuple[int, bytes]:
        return self.loop.run(_asgi(self.sidecar, request))

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        content = b"" if body is None else orjson.dumps(body)
        return self.send(Request(method, path, b"", ((b"content-type", b"application/json"),), content, False))


def _snapshot(harness: Harness) -> dict[str, Any]:
    """What was seeded: state in every store, a held lock, configuration items."""
    seen: dict[str, Any] = {}
    for store in (VAULT, "statestore", "redisstore", "pgstore"):
        seen[store] = harness.call("POST", f"/v1.0/state/{store}/bulk", {"keys": [SEED_KEY]})
    seen["lock"] = harness.call(
        "POST", "/v1.0-alpha1/lock/lockstore", {"resourceId": SEED_KEY, "lockOwner": "other", "expiryInSeconds": 600}
    )
    seen["configuration"] = harness.call("GET", f"/v1.0/configuration/configstore?key={SEED_KEY}")
    return seen


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    resources = _resources(tmp_path_factory.mktemp("hostile") / "resources")
    loop = LoopThread()
    context = running_sidecar(resources)
    sidecar = loop.run(context.__aenter__())
    harness = Harness(loop, sidecar)
    for store in (VAULT, "statestore", "redisstore", "pgstore"):
        assert harness.call("POST", f"/v1.0/state/{store}", [{"key": SEED_KEY, "value": {"seeded": store}}])[0] == 204
    lock = {"resourceId": SEED_KEY, "lockOwner": "seeder", "expiryInSeconds": 600}
    assert harness.call("POST", "/v1.0-alpha1/lock/lockstore", lock) == (200, b'{"success":true}')
    items = {"items": [{"key": SEED_KEY, "value": "seeded", "version": "1"}]}
    saved = harness.call("POST", "/v1.0-alpha1/configuration/configstore", items)
    assert saved[0] == 204, saved
    harness.before = _snapshot(harness)  # type: ignore[attr-defined]
    try:
        yield harness
    finally:
        loop.run(context.__aexit__(None, None, None))
        loop.stop()


def _check(request: Request, status: int, body: bytes) -> None:
    if status < 500 and status != 0:
        if status >= 400 and body[:1] == b"{":
            assert orjson.loads(body).get("errorCode") != "ERROR", (request, body[:300])
        return
    code = orjson.loads(body).get("errorCode") if body[:1] == b"{" else body[:200]
    assert status == 500 and code in DOCUMENTED_500, (request, status, body[:400])


@settings(
    derandomize=True,  # the same examples in every run: CI is reproducible
    database=None,
    max_examples=4000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(request=st.one_of(random_requests(), attacks()))
def test_hostile_requests_get_specific_answers_and_never_touch_other_data(harness: Harness, request: Request) -> None:
    if unquote(request.path).rstrip("/").endswith("shutdown"):
        request = Request(request.method, "/v1.0/healthz", request.query, request.headers, request.body, False)
    status, body = harness.send(request)
    _check(request, status, body)


def test_after_the_hostile_run_the_sidecar_is_healthy_and_seeded_data_unchanged(harness: Harness) -> None:
    assert harness.call("GET", "/v1.0/healthz")[0] == 204
    assert _snapshot(harness) == harness.before  # type: ignore[attr-defined]


# ---- the --config file: any YAML under spec loads or is refused with one line naming the file ------------

_CONFIG_FIELDS = [
    "tracing", "samplingRate", "stdout", "zipkin", "endpointAddress", "otel", "protocol", "isSecure", "headers",
    "timeout", "metric", "metrics", "enabled", "http", "increasedCardinality", "pathMatching", "excludeVerbs",
    "rules", "labels", "regex", "name", "latencyDistributionBuckets", "recordErrorCodes", "logging", "apiLogging",
    "obfuscateURLs", "omitHealthChecks", "nameResolution", "component", "version", "configuration",
    "httpPipeline", "appHttpPipeline", "handlers", "type", "selector", "fields", "field", "value",
    "accessControl", "defaultAction", "trustDomain", "policies", "appId", "namespace", "operations", "httpVerb",
    "action", "secrets", "scopes", "storeName", "defaultAccess", "allowedSecrets", "deniedSecrets", "api",
    "allowed", "denied", "features", "mtls", "x",
]  # fmt: skip
_config_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(_CONFIG_FIELDS), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(derandomize=True, database=None, max_examples=1500, deadline=None)
@given(spec=st.dictionaries(st.sampled_from(_CONFIG_FIELDS), _config_values, max_size=6))
def test_hostile_configuration_files_load_or_fail_with_one_line(
    tmp_path_factory: pytest.TempPathFactory, spec: Any
) -> None:
    from building_blocks.configuration_spec import load_configuration
    from building_blocks.errors import SpecError

    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_text(json.dumps({"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration", "spec": spec}))
    try:
        load_configuration(path)
    except SpecError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc), exc


# ---- governance: resiliency specs, middleware metadata and hostile bearer tokens -------------------------------

_RESILIENCY_FIELDS = [
    "policies", "timeouts", "retries", "circuitBreakers", "targets", "components", "apps", "outbound", "inbound",
    "timeout", "retry", "circuitBreaker", "policy", "duration", "maxRetries", "maxInterval", "initialInterval",
    "multiplier", "randomizationFactor", "matching", "httpStatusCodes", "maxRequests", "interval", "trip",
    "DefaultRetryPolicy", "DefaultStatestoreComponentOutboundTimeoutPolicy", "statestore", "x",
]  # fmt: skip
_resiliency_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["5s", "500", "-1", "1h1m", "consecutiveFailures > 2", "requests >= 3 && totalFailures > 1"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(_RESILIENCY_FIELDS), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(derandomize=True, database=None, max_examples=500, deadline=None)
@given(spec=st.dictionaries(st.sampled_from(_RESILIENCY_FIELDS), _resiliency_values, max_size=6))
def test_hostile_resiliency_specs_load_or_fail_with_one_line(spec: Any) -> None:
    from building_blocks.errors import SpecError
    from building_blocks.resiliency import Resiliency

    try:
        resiliency = Resiliency.load([("r.yaml", {"metadata": {"name": "r"}, "spec": spec})], "app")
    except SpecError as exc:
        assert str(exc).startswith("r.yaml: ") and "\n" not in str(exc), exc
        return
    for kind in ("Statestore", "Lock"):
        resiliency.component_outbound("statestore", kind)  # resolves without raising


_middleware_text = st.text(max_size=60) | st.sampled_from(["0", "-1", "nan", "inf", "1e309", "[]", "[{}]", "("])


@settings(derandomize=True, database=None, max_examples=250, deadline=None)
@given(
    rate=_middleware_text,
    rule=_middleware_text,
    flow=_middleware_text | st.builds(json.dumps, st.lists(st.dictionaries(st.text(max_size=8), _config_values))),
)
def test_hostile_middleware_metadata_builds_or_fails_with_one_line(rate: str, rule: str, flow: str) -> None:
    from app.governance import ratelimit, routerchecker, sentinel
    from app.governance.pipeline import MiddlewareSpec
    from building_blocks.errors import SpecError

    async def build_each() -> None:
        for module, metadata in (
            (ratelimit, {"maxRequestsPerSecond": rate}),
            (routerchecker, {"rule": rule}),
            (sentinel, {"appName": "a", "flowRules": flow, "isolationRules": flow}),
        ):
            spec = MiddlewareSpec("m", "middleware.http.x", "v1", metadata, "c.yaml: component 'm'")
            try:
                await module.create(spec)
            except SpecError as exc:
                assert str(exc).startswith("c.yaml: component 'm': ") and "\n" not in str(exc), exc

    asyncio.run(build_each())  # one loop per example: making loops is what costs here


_JWT_PARTS = st.sampled_from(
    ["eyJhbGciOiJub25lIn0", "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0", "eyJraWQiOlsxXX0", "e30", "", "%%", "a" * 50]
)


@settings(derandomize=True, database=None, max_examples=400, deadline=None)
@given(
    header=st.one_of(
        st.text(max_size=200),
        st.builds(lambda parts: "Bearer " + ".".join(parts), st.lists(_JWT_PARTS | st.text(max_size=40), max_size=5)),
    )
)
def test_hostile_bearer_tokens_are_401(header: str) -> None:
    from starlette.requests import Request
    from starlette.responses import Response

    from app.governance.bearer import Bearer

    bearer = Bearer("https://issuer", "aud", "http://127.0.0.1:9/jwks")
    bearer._fetched = float("inf")  # the key set is empty and never refetched: nothing can be valid

    async def endpoint() -> Response:
        raise AssertionError("a hostile token got through")

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"authorization", header.encode())]}
    response = asyncio.run(bearer(Request(scope), endpoint))
    assert (response.status_code, response.body) == (401, b"Unauthorized")


# ---- the metrics listener: any request head gets an answer or a closed connection, and it keeps serving -----

_HEAD_PARTS = st.sampled_from(
    [b"GET", b"HEAD", b"POST", b"PUT", b"BREW", b" ", b"/", b"/metrics", b"/layotto/deliveries", b"?x=1", b"%00",
     b"HTTP/1.1", b"HTTP/9", b"\r\n", b"\n", b"Host: x", b":", b"\x00", b"\xff", b"a" * 300]
)  # fmt: skip


@settings(derandomize=True, database=None, max_examples=300, deadline=None)
@given(head=st.lists(_HEAD_PARTS, max_size=12).map(b"".join), tail=st.binary(max_size=64))
def test_hostile_requests_to_the_metrics_listener(head: bytes, tail: bytes) -> None:
    from app.observability.server import MetricsServer

    async def scenario() -> None:
        server = MetricsServer(lambda: "# TYPE dapr_x counter\ndapr_x 1\n", "127.0.0.1", 0, lambda: b"[]")
        assert await server.start()
        port = server.bound_port
        assert port is not None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head + tail + b"\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(15):
                answer = await reader.read()
            writer.close()
            await writer.wait_closed()
            assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:100]
            # and it still serves a plain scrape afterwards
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(15):
                answer = await reader.read()
            writer.close()
            await writer.wait_closed()
            assert answer.startswith(b"HTTP/1.1 200 OK") and b"dapr_x 1" in answer
        finally:
            await server.close()

    asyncio.run(scenario())


@settings(derandomize=True, database=None, max_examples=400, deadline=None)
@given(
    method=st.text(st.sampled_from("/*ab.%x?Ü"), max_size=300),
    verb=st.sampled_from(["GET", "POST", "", "*", "get"]),
    caller=st.sampled_from(["app1", "", "app1||ns1", "x"]),
)
def test_hostile_invoked_methods_get_an_access_decision(method: str, verb: str, caller: str) -> None:
    from app.governance.access_control import AccessControl
    from building_blocks.configuration_spec import AccessControlSpec, AppOperationSpec, AppPolicySpec

    operations = tuple(
        AppOperationSpec(name, ("*",), "allow") for name in ("/a/*", "/a/**", "/*b*a*", "/x", "/**", "/*")
    )
    spec = AccessControlSpec("deny", "", (AppPolicySpec("app1", "deny", "public", "ns1", operations),))
    for http_app in (True, False):
        assert AccessControl(spec, http_app).allows(caller, "ns1", method, verb) in (True, False)
