"""The ``--config`` file: Dapr's ``kind: Configuration`` read into a typed model, errors naming file and field."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.settings import DEFAULT_RESOURCES_PATH
from building_blocks.configuration_spec import (
    DEFAULT_LATENCY_BUCKETS_MS,
    AccessControlSpec,
    ApiAccessRule,
    AppOperationSpec,
    AppPolicySpec,
    ConfigurationSpec,
    HandlerSpec,
    OtelSpec,
    SecretsScopeSpec,
    load_configuration,
)
from building_blocks.errors import SpecError
from building_blocks.runtime import Runtime, RuntimeConfig

ROOT = Path(__file__).resolve().parents[2]

FULL = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: appconfig
spec:
  tracing:
    samplingRate: "0.5"
    stdout: true
    zipkin:
      endpointAddress: http://localhost:9411/api/v2/spans
    otel:
      endpointAddress: localhost:4317
      protocol: grpc
      isSecure: false
      headers: ["x-token=abc", {name: x-other, value: def}]
      timeout: 5s
  metric:
    enabled: true
    latencyDistributionBuckets: [5, 1, 10]
  metrics:
    enabled: false
    recordErrorCodes: true
    http:
      increasedCardinality: false
      pathMatching: ["/orders/{orderID}", "/items"]
      excludeVerbs: true
    rules:
      - name: dapr_runtime_service_invocation_req_sent_total
        labels:
          - name: method
            regex:
              "orders/": "orders/.+"
  logging:
    apiLogging:
      enabled: true
      obfuscateURLs: true
      omitHealthChecks: true
  nameResolution:
    component: SQLite
    version: v1
    configuration: {connectionString: /tmp/x.db}
  httpPipeline:
    handlers:
      - {name: ratelimit, type: middleware.http.ratelimit}
      - name: upper
        type: middleware.http.uppercase
        version: v1
        selector: {fields: [{field: method, value: POST}]}
  appHttpPipeline:
    handlers: [{name: appmw, type: middleware.http.routeralias}]
  accessControl:
    defaultAction: DENY
    trustDomain: public
    policies:
      - appId: app1
        defaultAction: allow
        trustDomain: public
        namespace: default
        operations:
          - {name: /op1, httpVerb: [POST, GET], action: deny}
  secrets:
    scopes:
      - {storeName: vault, defaultAccess: Deny, allowedSecrets: [a, b], deniedSecrets: [c]}
  api:
    allowed: [{name: state, version: v1.0, protocol: HTTP}]
    denied: [{name: invoke, version: v1}]
  features:
    - {name: Resiliency, enabled: true}
    - {name: Other, enabled: false}
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def configuration(body: str) -> str:
    head = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n"
    return head + textwrap.indent(textwrap.dedent(body), "  ")


def test_every_field_is_read(tmp_path: Path) -> None:
    spec = load_configuration(write(tmp_path, FULL))
    assert (spec.name, spec.source) == ("appconfig", str(tmp_path / "config.yaml"))
    tracing = spec.tracing
    assert tracing is not None and tracing.enabled
    assert (tracing.sampling_rate, tracing.stdout, tracing.zipkin_endpoint) == (
        0.5,
        True,
        "http://localhost:9411/api/v2/spans",
    )
    assert tracing.otel == OtelSpec("localhost:4317", "grpc", False, (("x-token", "abc"), ("x-other", "def")), 5.0)
    metrics = spec.metrics
    # spec.metrics wins field by field over spec.metric; the buckets only spec.metric set survive, sorted
    assert (metrics.enabled, metrics.record_error_codes, metrics.latency_buckets_ms) == (False, True, (1, 5, 10))
    assert metrics.http.increased_cardinality is False and not metrics.http.legacy_paths
    assert metrics.http.path_matching == ("/orders/{orderID}", "/items") and metrics.http.exclude_verbs
    assert metrics.rules[0].labels[0].regex == (("orders/", "orders/.+"),)
    assert (spec.api_logging.enabled, spec.api_logging.obfuscate_urls, spec.api_logging.omit_health_checks) == (
        True,
        True,
        True,
    )
    assert spec.name_resolution is not None and spec.name_resolution.component == "sqlite"
    assert spec.name_resolution.configuration == {"connectionString": "/tmp/x.db"}
    assert spec.http_pipeline.handlers == (
        HandlerSpec("ratelimit", "middleware.http.ratelimit"),
        HandlerSpec("upper", "middleware.http.uppercase", "v1", (("method", "POST"),)),
    )
    assert spec.app_http_pipeline.handlers[0].name == "appmw"
    assert spec.access_control == AccessControlSpec(
        "deny",
        "public",
        (AppPolicySpec("app1", "allow", "public", "default", (AppOperationSpec("/op1", ("POST", "GET"), "deny"),)),),
    )
    assert spec.secret_scopes == (SecretsScopeSpec("vault", "deny", ("a", "b"), ("c",)),)
    assert spec.api.allowed == (ApiAccessRule("state", "v1.0", "http"),)
    assert spec.api.denied == (ApiAccessRule("invoke", "v1", ""),)
    assert spec.feature("Resiliency") and not spec.feature("Other") and not spec.feature("Missing")


def test_daprs_default_config_file(tmp_path: Path) -> None:
    """What ``dapr init`` writes to ~/.dapr/config.yaml loads as is."""
    path = write(
        tmp_path,
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Configuration
        metadata:
          name: daprConfig
        spec:
          tracing:
            samplingRate: "1"
            zipkin:
              endpointAddress: http://localhost:9411/api/v2/spans
        """,
    )
    spec = load_configuration(path)
    assert spec.tracing is not None and spec.tracing.sampling_rate == 1.0
    assert spec.metrics.enabled and spec.metrics.latency_buckets_ms == DEFAULT_LATENCY_BUCKETS_MS
    assert spec.metrics.http.legacy_paths  # increasedCardinality unset: Dapr's default, true


def test_defaults() -> None:
    spec = ConfigurationSpec()
    assert spec.tracing is None and spec.metrics.enabled and not spec.api_logging.enabled
    assert spec.access_control is None and spec.secret_scopes == () and spec.api.allowed == ()


def test_empty_sampling_rate_is_daprs_default(tmp_path: Path) -> None:
    spec = load_configuration(write(tmp_path, configuration("tracing: {stdout: true}")))
    assert spec.tracing is not None and spec.tracing.sampling_rate == 1e-4
    zero = load_configuration(write(tmp_path, configuration("tracing: {samplingRate: '0'}")))
    assert zero.tracing is not None and not zero.tracing.enabled


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("tracing: {samplingRate: abc}", "spec.tracing.samplingRate is not a number: 'abc'"),
        ("tracing: {samplingRate: '2'}", "spec.tracing.samplingRate must be between 0 and 1"),
        ("tracing: {otel: {protocol: udp}}", "spec.tracing.otel.protocol must be http or grpc: 'udp'"),
        ("tracing: {otel: {protocol: http, timeout: soon}}", "spec.tracing.otel.timeout is not a duration"),
        ("tracing: [1]", "spec.tracing must be a mapping"),
        ("metrics: {enabled: maybe}", "spec.metrics.enabled must be true or false"),
        ("metrics: {latencyDistributionBuckets: [1, -2]}", "spec.metrics.latencyDistributionBuckets[1] must be"),
        ("metrics: {http: {pathMatching: [orders]}}", "spec.metrics.http.pathMatching patterns must start"),
        ("metrics: {rules: [{labels: []}]}", "spec.metrics.rules[0].name is missing"),
        ("logging: {apiLogging: {enabled: [x]}}", "spec.logging.apiLogging.enabled must be true or false"),
        ("nameResolution: {component: dns, configuration: [1]}", "spec.nameResolution.configuration must be"),
        ("httpPipeline: {handlers: [{name: x}]}", "spec.httpPipeline.handlers[0] needs a name and a type"),
        ("httpPipeline: {handlers: x}", "spec.httpPipeline.handlers must be a list"),
        ("accessControl: {defaultAction: maybe}", "spec.accessControl.defaultAction must be allow or deny"),
        (
            "accessControl: {policies: [{appId: a, namespace: n}]}",
            "invalid access control spec. missing trustdomain for apps: [a], missing namespace for apps: [], "
            "missing app name on at least one of the app policies: false",
        ),
        (
            "secrets: {scopes: [{storeName: s}, {storeName: s}]}",
            "spec.secrets.scopes: s storeName is repeated in secrets configuration",
        ),
        ("secrets: {scopes: [{storeName: s, defaultAccess: sometimes}]}", "defaultAccess must be allow or deny"),
        ("api: {allowed: [{name: state}]}", "spec.api.allowed[0] needs a name and a version"),
        ("api: {denied: [{name: state, version: v1, protocol: tcp}]}", "spec.api.denied[0].protocol must be"),
        ("features: [{enabled: true}]", "spec.features[0].name is missing"),
    ],
)
def test_malformed_fields_name_file_and_field(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, configuration(body))
    with pytest.raises(SpecError) as raised:
        load_configuration(path)
    text = str(raised.value)
    assert text.startswith(f"{path}: configuration 'c': ") and message in text, text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Component\n", "no 'kind: Configuration' document"),
        ("a: [\n", "malformed YAML"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError, match=message):
        load_configuration(path)
    with pytest.raises(SpecError, match="cannot read"):
        load_configuration(tmp_path / "missing.yaml")


def test_unknown_fields_warn_with_a_suggestion(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    body = "tracing: {samplingrate: '1', samplingRate: '1'}\nmtls: {enabled: true}\nbogus: 1\n"
    with caplog.at_level(logging.WARNING, "layotto.runtime"):
        load_configuration(write(tmp_path, configuration(body)))
    messages = [record.getMessage() for record in caplog.records]
    assert any("unknown field spec.tracing.samplingrate ignored (did you mean samplingRate?)" in m for m in messages)
    assert any("unknown field spec.bogus ignored" in m for m in messages)
    assert any("spec.mtls is not applied by this runtime" in m for m in messages)


async def test_the_runtime_exposes_it_and_its_name_resolution_wins(tmp_path: Path) -> None:
    """The runtime reads ``--config``; its ``nameResolution`` wins over one in the resources path."""
    resources = tmp_path / "resources"
    resources.mkdir()
    (resources / "nr.yaml").write_text(configuration("nameResolution: {component: nosuchresolver}"))
    database = tmp_path / "nr.db"
    config_file = write(
        tmp_path,
        configuration(f"nameResolution: {{component: sqlite, configuration: {{connectionString: '{database}'}}}}"),
    )
    runtime = Runtime(RuntimeConfig(app_id="cfg", resources_paths=(resources,), configuration_file=config_file))
    async with runtime:
        assert runtime.configuration_spec.name_resolution is not None
        assert runtime.resolver.metadata["connectionString"] == str(database)
    without = Runtime(RuntimeConfig(app_id="cfg", resources_paths=(resources,)))
    with pytest.raises(SpecError, match="nosuchresolver"):
        await without.prepare()
    await without.close()


def test_layotto_run_refuses_a_malformed_config_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, configuration("tracing: {samplingRate: often}"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "run",
            "--app-id",
            "x",
            "-d",
            str(DEFAULT_RESOURCES_PATH),
            "-c",
            str(path),
            "--dapr-http-port",
            "0",
            "--enable-metrics=false",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"layotto: {path}: configuration 'c': spec.tracing.samplingRate is not a number: 'often'"
    )
