"""Dapr's metrics, scraped for real: names, labels, buckets and values after real API calls."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from app.observability.instruments import Counter, Histogram, exposition
from app.observability.paths import PathLabels, legacy_label
from app.settings import DEFAULT_RESOURCES_PATH
from building_blocks.configuration_spec import DEFAULT_LATENCY_BUCKETS_MS, MetricsHttpSpec
from tests.observability.tools import free_port, prometheus
from tests.sidecar import Sidecar, running_sidecar

# ---- the path label --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/v1.0/state/mystore/key", "/v1.0/state/mystore"),
        ("/v1.0/state/mystore", "/v1.0/state/mystore"),
        ("/v1.0/secrets/vault/a/b", "/v1.0/secrets/vault"),
        ("/v1.0/actors/Demo/1/method/m", "/v1.0/actors/Demo/{id}/method"),
        ("/actors/Demo/1/method/m", "actors/Demo/{id}/method/m"),
        ("/v1.0/invoke/app/method/orders/1", "/v1.0/invoke/app/method/orders/1"),
        ("/v1.0/healthz", "/v1.0/healthz"),
        ("/v1.0", "/v1.0"),
    ],
)
def test_legacy_path_labels_are_daprs(path: str, label: str) -> None:
    assert legacy_label(path) == label
    assert PathLabels(MetricsHttpSpec()).label(path) == label  # increasedCardinality unset: legacy


def test_low_cardinality_and_path_matching() -> None:
    low = PathLabels(MetricsHttpSpec(increased_cardinality=False))
    assert low.label("/v1.0/state/s/k") == "" and low.label("/dapr/subscribe") == "/dapr/subscribe"
    spec = MetricsHttpSpec(
        False, ("/orders/{orderID}", "/orders/{orderID}/items/{rest...}", "/static/", "/v1.0/state/{s}")
    )
    matching = PathLabels(spec)
    assert matching.label("/orders/1") == "/orders/{orderID}"
    assert matching.label("/v1.0/invoke/shop/method/orders/1") == "/orders/{orderID}"
    assert matching.label("/orders/1/items/a/b") == "/orders/{orderID}/items/{rest...}"
    assert matching.label("/static/css/x.css") == "/static/"
    assert matching.label("/v1.0/state/s") == "/v1.0/state/{s}"
    assert matching.label("/v1.0/state/s/k") == ""  # no pattern: "" in low cardinality
    legacy = PathLabels(MetricsHttpSpec(True, ("/orders/{orderID}",)))
    assert legacy.label("/v1.0/state/s/k") == "/v1.0/state/s/k"  # legacy with pathMatching: as requested


# ---- the exposition --------------------------------------------------------------------------------------


def test_exposition_has_daprs_names_and_parses() -> None:
    counter = Counter("dapr_http_server_request_count", "Requests.", ("method", "path", "status"))
    counter.inc(("GET", '/a"b\\', "200"))
    counter.inc(("GET", '/a"b\\', "200"))
    histogram = Histogram("dapr_http_server_latency", "Latency.", ("method",), DEFAULT_LATENCY_BUCKETS_MS)
    for value in (0, 1, 1.5, 7, 200000):
        histogram.observe(("GET",), value)
    unused = Counter("dapr_unused", "Never recorded.", ())
    text = exposition([counter, histogram, unused], "myapp")
    assert "# TYPE dapr_http_server_request_count counter\n" in text
    assert 'dapr_http_server_request_count{app_id="myapp",method="GET",path="/a\\"b\\\\",status="200"} 2\n' in text
    assert 'dapr_http_server_latency_bucket{app_id="myapp",method="GET",le="1"} 2\n' in text
    assert 'dapr_http_server_latency_bucket{app_id="myapp",method="GET",le="2"} 3\n' in text
    assert 'dapr_http_server_latency_bucket{app_id="myapp",method="GET",le="100000"} 4\n' in text
    assert "dapr_unused" not in text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["dapr_http_server_request_count"].type == "counter"
    latency = families["dapr_http_server_latency"]
    assert latency.type == "histogram"
    infinite = [s for s in latency.samples if s.labels.get("le") == "+Inf"]
    assert [s.value for s in infinite] == [5]
    assert [s.value for s in latency.samples if s.name.endswith("_sum")] == [200009.5]
    assert len([s for s in latency.samples if s.name.endswith("_bucket")]) == len(DEFAULT_LATENCY_BUCKETS_MS) + 1


def test_metric_rules_rewrite_label_values() -> None:
    counter = Counter("dapr_runtime_service_invocation_req_sent_total", "x", ("dst_app_id", "method"))
    counter.add_rule("method", [("orders/", "orders/.+")])
    counter.inc(("a", "orders/1"))
    counter.inc(("a", "orders/2"))
    assert counter.values == {("a", "orders/"): 2}


# ---- a sidecar, scraped ---------------------------------------------------------------------------------


def samples(text: str, name: str) -> list[Sample]:
    """Every sample of the family ``name`` (the parser adds ``_total`` to counter samples; it is dropped here)."""
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.removesuffix("_total") == name or sample.name == name:
                found.append(sample)
    return found


def value(text: str, name: str, /, **labels: str) -> float:
    return sum(s.value for s in samples(text, name) if all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, int]]:
    port = free_port()
    async with running_sidecar(DEFAULT_RESOURCES_PATH, metrics_port=port, enable_metrics=True) as sidecar:
        yield sidecar, port


async def scrape(port: int, path: str = "/metrics") -> str:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}{path}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


async def test_api_and_component_calls_are_measured(sidecar: tuple[Sidecar, int]) -> None:
    side, port = sidecar
    key = uuid.uuid4().hex
    saved = await side.client.post("/v1.0/state/statestore", json=[{"key": key, "value": {"a": 1}}])
    assert saved.status_code == 204
    for _ in range(3):
        assert (await side.client.get(f"/v1.0/state/statestore/{key}")).status_code == 200
    assert (await side.client.get("/v1.0/state/nosuchstore/x")).status_code == 400
    assert (await side.client.post("/v1.0/publish/pubsub/orders", json={"id": 1})).status_code == 204
    text = await scrape(port)
    other = await scrape(port, "/anything")  # every path, as daprd's handler on "/"
    assert text.partition("# HELP python_")[0] == other.partition("# HELP python_")[0]
    app = side.app_id
    # Dapr's exact names: counters without _total, histograms with buckets
    assert (
        f'dapr_http_server_request_count{{app_id="{app}",method="GET",path="/v1.0/state/statestore",status="200"}} 3'
        in text
    )
    assert "# TYPE dapr_http_server_request_count counter" in text
    types = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))  # each family once
    get = {"app_id": app, "method": "GET", "path": "/v1.0/state/statestore", "status": "200"}
    assert value(text, "dapr_http_server_latency_count", **get) == 3
    assert value(text, "dapr_http_server_response_count", **get) == 3  # registered with increasedCardinality
    assert value(text, "dapr_http_server_request_count", path="/v1.0/state/nosuchstore", status="400") == 1
    assert value(text, "dapr_http_server_request_count", method="POST", path="/v1.0/publish/pubsub/orders") == 1
    assert value(text, "dapr_http_server_request_bytes_count", app_id=app) >= 6
    assert value(text, "dapr_http_server_response_bytes_sum", app_id=app) > 0
    state = {"app_id": app, "component": "statestore", "namespace": "", "success": "true"}
    assert value(text, "dapr_component_state_count", operation="get", **state) == 3
    assert value(text, "dapr_component_state_count", operation="set", **state) == 1
    assert value(text, "dapr_component_state_latencies_count", operation="get", **state) == 3
    assert value(text, "dapr_component_pubsub_egress_count", component="pubsub", topic="orders", success="true") == 1
    latency = samples(text, "dapr_component_state_latencies_bucket")
    assert {s.labels["le"] for s in latency} == {*(str(int(b)) for b in DEFAULT_LATENCY_BUCKETS_MS), "+Inf"}
    assert samples(text, "process_cpu_seconds") or samples(text, "python_info")  # the process, as daprd's go_*


async def test_lock_sequencer_configuration_and_init_counts(sidecar: tuple[Sidecar, int]) -> None:
    side, port = sidecar
    owner = uuid.uuid4().hex
    lock = {"resourceId": owner, "lockOwner": owner, "expiryInSeconds": 30}
    assert (await side.client.post("/v1.0-alpha1/lock/lockstore", json=lock)).status_code == 200
    assert (await side.client.post("/v1.0-alpha1/sequencer/sequencer", json={"key": owner})).status_code == 200
    assert (await side.client.get("/v1.0/configuration/configstore?key=a")).status_code in (200, 204)
    await side.runtime.wait_ready()
    text = await scrape(port)
    assert value(text, "layotto_component_lock_count", component="lockstore", operation="try_lock", success="true") == 1
    assert value(text, "layotto_component_sequencer_count", component="sequencer", operation="next_id") == 1
    assert value(text, "dapr_component_configuration_count", component="configstore", operation="get") == 1
    deadline = time.monotonic() + 30
    while value(text, "dapr_runtime_component_init_total", component="state.sqlite") != 1:
        assert time.monotonic() < deadline, text
        await asyncio.sleep(0.05)
        text = await scrape(port)
    assert value(text, "dapr_runtime_component_loaded") == len(side.runtime.components)


async def test_path_matching_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            apiVersion: dapr.io/v1alpha1
            kind: Configuration
            metadata: {name: c}
            spec:
              metrics:
                http:
                  increasedCardinality: false
                  pathMatching: ["/v1.0/state/{store}/{key}"]
                  excludeVerbs: true
            """
        )
    )
    port = free_port()
    async with running_sidecar(DEFAULT_RESOURCES_PATH, metrics_port=port, config_file=config) as side:
        await side.client.get("/v1.0/state/statestore/a")
        await side.client.get("/v1.0/state/statestore/b")
        await side.client.get("/v1.0/metadata")
        text = await scrape(port)
    assert value(text, "dapr_http_server_request_count", method="", path="/v1.0/state/{store}/{key}") == 2
    assert value(text, "dapr_http_server_request_count", path="") == 1
    assert not samples(text, "dapr_http_server_response_count")  # only with increasedCardinality


async def test_metrics_disabled_cost_nothing(tmp_path: Path) -> None:
    from app.main import create_app
    from app.middleware import FrontDoor
    from app.settings import Settings

    port = free_port()
    settings = Settings(
        app_id="off", resources_paths=(DEFAULT_RESOURCES_PATH,), enable_metrics=False, metrics_port=port
    )
    app = create_app(settings)
    assert type(app) is FrontDoor  # the plain door: nothing measured per request
    async with app.lifespan():
        assert app.runtime.observability is not None and app.runtime.observability.metrics is None
        assert all(not block.layers for block in app.runtime.core.blocks.values())
        with pytest.raises(httpx.ConnectError):
            await scrape(port)


async def test_config_disables_metrics_but_keeps_the_listener(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec: {metrics: {enabled: false}}\n"
    )
    port = free_port()
    async with running_sidecar(DEFAULT_RESOURCES_PATH, metrics_port=port, config_file=config) as side:
        await side.client.get("/v1.0/metadata")
        text = await scrape(port)
    assert "dapr_" not in text and "process_" in text


async def test_a_taken_metrics_port_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with socket_taken() as port, caplog.at_level("WARNING", "layotto.metrics"):
        async with running_sidecar(DEFAULT_RESOURCES_PATH, metrics_port=port) as side:
            assert (await side.client.get("/v1.0/healthz")).status_code == 204
    assert any(f"metrics server not started on 127.0.0.1:{port}" in r.getMessage() for r in caplog.records)


class socket_taken:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


async def test_a_real_prometheus_scrapes_the_sidecar(sidecar: tuple[Sidecar, int], tmp_path: Path) -> None:
    binary = prometheus()
    side, port = sidecar
    key = uuid.uuid4().hex
    for _ in range(4):
        await side.client.get(f"/v1.0/state/statestore/{key}")
    web = free_port()
    log = tmp_path / "prometheus.log"
    (tmp_path / "prometheus.yml").write_text(
        textwrap.dedent(
            f"""\
            global: {{scrape_interval: 1s}}
            scrape_configs:
              - job_name: layotto
                static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
            """
        )
    )
    log_file = log.open("wb")
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{web}",
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    try:
        query = 'dapr_http_server_request_count{path="/v1.0/state/statestore",method="GET",status="204"}'
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web}") as client:
            while True:
                assert process.returncode is None, log.read_text()
                try:
                    reply = await client.get("/api/v1/query", params={"query": query})
                except httpx.TransportError:
                    reply = None
                # Until its storage is ready, Prometheus answers 503 with a plain-text body: ask again.
                answer = reply.json() if reply is not None and reply.status_code == 200 else {}
                result = answer.get("data", {}).get("result", [])
                if result:
                    break
                assert time.monotonic() < deadline, answer
                await asyncio.sleep(0.2)
            targets = (await client.get("/api/v1/targets")).json()["data"]["activeTargets"]
        assert result[0]["metric"]["app_id"] == side.app_id and result[0]["value"][1] == "4"
        assert targets[0]["health"] == "up", targets
    finally:
        process.terminate()
        await process.communicate()
        log_file.close()


async def test_error_codes_are_counted_when_asked(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec: {metrics: {recordErrorCodes: true}}\n"
    )
    port = free_port()
    async with running_sidecar(DEFAULT_RESOURCES_PATH, metrics_port=port, config_file=config) as side:
        for _ in range(2):
            assert (await side.client.get("/v1.0/state/nosuchstore/x")).status_code == 400
        text = await scrape(port)
    assert value(text, "dapr_error_code_total", error_code="ERR_STATE_STORE_NOT_FOUND", category="state") == 2
    port = free_port()
    async with running_sidecar(DEFAULT_RESOURCES_PATH, metrics_port=port) as side:
        await side.client.get("/v1.0/state/nosuchstore/x")
        assert not samples(await scrape(port), "dapr_error_code_total")  # only with recordErrorCodes


async def test_metric_rules_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            apiVersion: dapr.io/v1alpha1
            kind: Configuration
            metadata: {name: c}
            spec:
              metrics:
                rules:
                  - name: dapr_http_server_request_count
                    labels:
                      - name: path
                        regex: {"/v1.0/state/keys": "/v1.0/state/statestore.*"}
            """
        )
    )
    port = free_port()
    async with running_sidecar(DEFAULT_RESOURCES_PATH, metrics_port=port, config_file=config) as side:
        await side.client.get("/v1.0/state/statestore/a")
        await side.client.get("/v1.0/state/statestore/b")
        text = await scrape(port)
    assert value(text, "dapr_http_server_request_count", path="/v1.0/state/keys") == 2
    assert value(text, "dapr_http_server_latency_count", path="/v1.0/state/statestore") == 2  # its own rules only


class _ClosedAtOnce:
    """What uvloop's ``start_server`` can hand back on a busy machine: a server whose one socket already closed."""

    sockets: list[None] = [None]
    closed = False

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass


async def test_a_metrics_socket_closed_at_once_is_a_warning_not_a_failed_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from app.observability.server import MetricsServer

    server = _ClosedAtOnce()

    async def start_server(*args: object, **kwargs: object) -> _ClosedAtOnce:
        return server

    monkeypatch.setattr(asyncio, "start_server", start_server)
    metrics = MetricsServer(lambda: "", "127.0.0.1", 0)
    assert await metrics.start() is False  # the sidecar carries on without metrics, as for a port taken
    assert server.closed and metrics.bound_port is None
    assert "metrics server not started on 127.0.0.1:0: its socket closed" in caplog.text
