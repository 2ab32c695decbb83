"""Dapr's ``kind: Configuration`` file (``--config``, e.g. ``~/.dapr/config.yaml``) as a typed, frozen model.

One function, ``load_configuration``, reads the file daprd reads, unchanged. A malformed file fails start-up
with one ``SpecError`` line naming the file, the configuration and the field; a field nobody reads is logged
as a warning (with a did-you-mean), never silently ignored. The domain holds it (``Runtime.configuration_spec``);
the fronts read what concerns them: tracing, metrics and API logging (``app.observability``), the pipelines,
access control, secret scopes and the API allow/deny lists (governance), the name resolver (the runtime).

Where daprd would quietly fall back (an unparsable ``samplingRate`` becomes 1e-4), this refuses the file:
a typo in a sampling rate is a mistake best seen at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml

from building_blocks._common.yamldocs import safe_load_all
from building_blocks.component import parse_duration
from building_blocks.errors import SpecError

__all__ = (
    "DEFAULT_LATENCY_BUCKETS_MS",
    "AccessControlSpec",
    "ApiAccessRule",
    "ApiLoggingSpec",
    "ApiSpec",
    "AppOperationSpec",
    "AppPolicySpec",
    "ConfigurationSpec",
    "FeatureSpec",
    "HandlerSpec",
    "MetricLabelSpec",
    "MetricRuleSpec",
    "MetricsHttpSpec",
    "MetricsSpec",
    "NameResolutionSpec",
    "OtelSpec",
    "PipelineSpec",
    "SecretsScopeSpec",
    "TracingSpec",
    "load_configuration",
)

log = logging.getLogger("layotto.runtime")

T = TypeVar("T")

#: Dapr's default latency buckets, in milliseconds (``GetLatencyDistribution``).
DEFAULT_LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300, 400, 500, 650, 800,
    1000, 2000, 5000, 10000, 20000, 50000, 100000,
)  # fmt: skip
#: What daprd uses when ``samplingRate`` is empty.
DEFAULT_SAMPLING_RATE = 1e-4


@dataclass(frozen=True, slots=True)
class OtelSpec:
    """``spec.tracing.otel``: an OTLP exporter (``endpointAddress`` is ``host:port``, no scheme)."""

    endpoint_address: str
    protocol: str  # "grpc" | "http"
    is_secure: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None  # seconds


@dataclass(frozen=True, slots=True)
class TracingSpec:
    """``spec.tracing``. ``sampling_rate`` 0 means no tracing at all (daprd installs no trace middleware)."""

    sampling_rate: float = DEFAULT_SAMPLING_RATE
    stdout: bool = False
    zipkin_endpoint: str = ""
    otel: OtelSpec | None = None

    @property
    def enabled(self) -> bool:
        return self.sampling_rate > 0


@dataclass(frozen=True, slots=True)
class MetricLabelSpec:
    """One label rule of ``spec.metrics.rules[].labels``: ``regex`` maps a replacement to a pattern."""

    name: str
    regex: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class MetricRuleSpec:
    name: str
    labels: tuple[MetricLabelSpec, ...]


@dataclass(frozen=True, slots=True)
class MetricsHttpSpec:
    """``spec.metrics.http``: the ``path`` label rules (see ``app.observability.paths``)."""

    #: None = not set: Dapr's default (true, the legacy path labels).
    increased_cardinality: bool | None = None
    path_matching: tuple[str, ...] = ()
    exclude_verbs: bool = False

    @property
    def legacy_paths(self) -> bool:
        return self.increased_cardinality is None or self.increased_cardinality


@dataclass(frozen=True, slots=True)
class MetricsSpec:
    """``spec.metrics`` (or the older ``spec.metric``; each field set in ``metrics`` wins)."""

    enabled: bool = True
    http: MetricsHttpSpec = field(default_factory=MetricsHttpSpec)
    rules: tuple[MetricRuleSpec, ...] = ()
    latency_buckets_ms: tuple[float, ...] = DEFAULT_LATENCY_BUCKETS_MS
    record_error_codes: bool = False


@dataclass(frozen=True, slots=True)
class ApiLoggingSpec:
    """``spec.logging.apiLogging``; ``enabled`` yields to an explicit ``--enable-api-logging``."""

    enabled: bool = False
    obfuscate_urls: bool = False
    omit_health_checks: bool = False


@dataclass(frozen=True, slots=True)
class NameResolutionSpec:
    """``spec.nameResolution``: the resolver component and its free-form ``configuration``."""

    component: str
    version: str
    configuration: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One middleware of a pipeline: the ``middleware.http.*`` component of that name and type."""

    name: str
    type: str
    version: str = ""
    selector: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """``spec.httpPipeline`` / ``spec.appHttpPipeline``: handlers, the first listed outermost."""

    handlers: tuple[HandlerSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class AppOperationSpec:
    name: str
    http_verbs: tuple[str, ...] = ()
    action: str = ""


@dataclass(frozen=True, slots=True)
class AppPolicySpec:
    app_id: str
    default_action: str = ""
    trust_domain: str = ""
    namespace: str = ""
    operations: tuple[AppOperationSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class AccessControlSpec:
    """``spec.accessControl`` as written (defaults such as trust domain ``public`` are the enforcer's)."""

    default_action: str = ""
    trust_domain: str = ""
    policies: tuple[AppPolicySpec, ...] = ()


@dataclass(frozen=True, slots=True)
class SecretsScopeSpec:
    store_name: str
    default_access: str = ""  # "" | "allow" | "deny" (lowercased)
    allowed_secrets: tuple[str, ...] = ()
    denied_secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ApiAccessRule:
    name: str
    version: str
    protocol: str = ""  # "" | "http" | "grpc" (lowercased)


@dataclass(frozen=True, slots=True)
class ApiSpec:
    allowed: tuple[ApiAccessRule, ...] = ()
    denied: tuple[ApiAccessRule, ...] = ()


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    name: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class ConfigurationSpec:
    """A Dapr Configuration. ``ConfigurationSpec()`` is what a sidecar without ``--config`` runs with."""

    name: str = ""
    source: str = ""
    #: None: no ``spec.tracing`` (no tracing, as daprd without a sampling rate installs no middleware).
    tracing: TracingSpec | None = None
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    api_logging: ApiLoggingSpec = field(default_factory=ApiLoggingSpec)
    name_resolution: NameResolutionSpec | None = None
    http_pipeline: PipelineSpec = field(default_factory=PipelineSpec)
    app_http_pipeline: PipelineSpec = field(default_factory=PipelineSpec)
    access_control: AccessControlSpec | None = None
    secret_scopes: tuple[SecretsScopeSpec, ...] = ()
    api: ApiSpec = field(default_factory=ApiSpec)
    features: tuple[FeatureSpec, ...] = ()

    def feature(self, name: str) -> bool:
        """Whether the preview feature ``name`` is enabled."""
        return any(f.name == name and f.enabled for f in self.features)


#: Fields of ``spec`` daprd knows that this runtime does not apply; present, they are warned about as such.
_NOT_APPLIED = {"mtls", "components", "wasm", "workflow"}


class _Node:
    """A mapping of the file being read, at ``path``; reading a field marks it known, the rest is warned about."""

    __slots__ = ("_raw", "_seen", "path", "where")

    def __init__(self, raw: Any, path: str, where: str) -> None:
        if not isinstance(raw, dict):
            raise SpecError(f"{where}: {path} must be a mapping")
        self._raw: dict[Any, Any] = raw
        self._seen: set[str] = set()
        self.path = path
        self.where = where

    def error(self, name: str, problem: str) -> SpecError:
        return SpecError(f"{self.where}: {self.path}.{name} {problem}")

    def raw(self, name: str) -> Any:
        self._seen.add(name)
        return self._raw.get(name)

    def has(self, name: str) -> bool:
        return self._raw.get(name) is not None

    def node(self, name: str) -> _Node | None:
        value = self.raw(name)
        return None if value is None else _Node(value, f"{self.path}.{name}", self.where)

    def text(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(name, "must be a string")
        return str(value)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.error(name, "must be true or false")

    def items(self, name: str, read: Callable[[Any, str], T]) -> tuple[T, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(name, "must be a list")
        return tuple(read(item, f"{self.path}.{name}[{index}]") for index, item in enumerate(value))

    def texts(self, name: str) -> tuple[str, ...]:
        def text(item: Any, path: str) -> str:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise SpecError(f"{self.where}: {path} must be a string")
            return str(item)

        return self.items(name, text)

    def warn_unknown(self, not_applied: frozenset[str] = frozenset()) -> None:
        for key in self._raw:
            name = str(key)
            if name in self._seen:
                continue
            if name in not_applied:
                log.warning("%s: %s.%s is not applied by this runtime (ignored)", self.where, self.path, name)
                continue
            import difflib  # only for a did-you-mean: a plain start-up does not load it

            close = difflib.get_close_matches(name, [str(k) for k in self._seen], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            log.warning("%s: unknown field %s.%s ignored%s", self.where, self.path, name, hint)


def _tracing(node: _Node) -> TracingSpec:
    text = node.text("samplingRate").strip()
    if text:
        try:
            rate = float(text)
        except ValueError:
            raise node.error("samplingRate", f"is not a number: {text!r}") from None
        if not 0 <= rate <= 1:
            raise node.error("samplingRate", f"must be between 0 and 1: {text!r}")
    else:
        rate = DEFAULT_SAMPLING_RATE
    zipkin = node.node("zipkin")
    endpoint = ""
    if zipkin is not None:
        endpoint = zipkin.text("endpointAddress")
        zipkin.warn_unknown()
    otel = node.node("otel")
    spec = TracingSpec(rate, node.flag("stdout"), endpoint, _otel(otel) if otel is not None else None)
    node.warn_unknown()
    return spec


def _header(item: Any, path: str, where: str) -> tuple[str, str]:
    if isinstance(item, str) and "=" in item:
        name, _, value = item.partition("=")
        return name.strip(), value.strip()
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return item["name"], str(item.get("value") or "")
    raise SpecError(f"{where}: {path} must be 'name=value' or a mapping with name and value")


def _otel(node: _Node) -> OtelSpec | None:
    protocol = node.text("protocol").strip().lower()
    if protocol not in ("", "http", "grpc"):
        raise node.error("protocol", f"must be http or grpc: {protocol!r}")
    timeout: float | None = None
    if node.has("timeout"):
        try:
            timeout = parse_duration(node.text("timeout"))
        except ValueError:
            raise node.error("timeout", "is not a duration") from None
    spec = OtelSpec(
        endpoint_address=node.text("endpointAddress").strip(),
        protocol=protocol,
        is_secure=node.flag("isSecure", True),
        headers=node.items("headers", lambda item, path: _header(item, path, node.where)),
        timeout=timeout,
    )
    node.warn_unknown()
    if not protocol:  # daprd registers no exporter without a protocol
        log.warning("%s: %s.protocol is empty: no OTLP exporter", node.where, node.path)
        return None
    return spec


def _metrics(nodes: list[_Node]) -> MetricsSpec:
    """``spec.metric`` then ``spec.metrics``: a field set in the later one wins (daprd's ``sortMetricsSpec``)."""
    enabled, errors, buckets = True, False, DEFAULT_LATENCY_BUCKETS_MS
    rules: tuple[MetricRuleSpec, ...] = ()
    http = MetricsHttpSpec()
    for node in nodes:
        enabled = node.flag("enabled", enabled)
        errors = node.flag("recordErrorCodes", errors)
        if node.has("rules"):
            rules = node.items("rules", partial(_rule, where=node.where))
        if node.has("latencyDistributionBuckets"):
            values = node.items("latencyDistributionBuckets", partial(_bucket, where=node.where))
            buckets = tuple(sorted(set(values))) or DEFAULT_LATENCY_BUCKETS_MS
        sub = node.node("http")
        if sub is not None:
            cardinality = sub.flag("increasedCardinality") if sub.has("increasedCardinality") else None
            http = MetricsHttpSpec(
                increased_cardinality=cardinality if cardinality is not None else http.increased_cardinality,
                path_matching=sub.texts("pathMatching") if sub.has("pathMatching") else http.path_matching,
                exclude_verbs=sub.flag("excludeVerbs", http.exclude_verbs),
            )
            for pattern in http.path_matching:
                if not pattern.startswith("/"):
                    raise sub.error("pathMatching", f"patterns must start with '/': {pattern!r}")
            sub.warn_unknown()
        node.warn_unknown(frozenset({"workflow"}))
    return MetricsSpec(enabled, http, rules, buckets, errors)


def _bucket(item: Any, path: str, where: str) -> float:
    if isinstance(item, bool) or not isinstance(item, int | float) or item <= 0:
        raise SpecError(f"{where}: {path} must be a positive number of milliseconds")
    return float(item)


def _rule(item: Any, path: str, where: str) -> MetricRuleSpec:
    node = _Node(item, path, where)
    name = node.text("name")
    if not name:
        raise node.error("name", "is missing")

    def label(raw: Any, label_path: str) -> MetricLabelSpec:
        label_node = _Node(raw, label_path, where)
        regex = label_node.node("regex")
        pairs: tuple[tuple[str, str], ...] = ()
        if regex is not None:
            pairs = tuple((str(k), str(v)) for k, v in regex._raw.items())
            regex._seen.update(str(k) for k in regex._raw)
        spec = MetricLabelSpec(label_node.text("name"), pairs)
        label_node.warn_unknown()
        return spec

    rule = MetricRuleSpec(name, node.items("labels", label))
    node.warn_unknown()
    return rule


def _api_logging(node: _Node) -> ApiLoggingSpec:
    sub = node.node("apiLogging")
    node.warn_unknown()
    if sub is None:
        return ApiLoggingSpec()
    spec = ApiLoggingSpec(sub.flag("enabled"), sub.flag("obfuscateURLs"), sub.flag("omitHealthChecks"))
    sub.warn_unknown()
    return spec


def _name_resolution(node: _Node) -> NameResolutionSpec:
    configuration = node.raw("configuration") or {}
    if not isinstance(configuration, dict):
        raise node.error("configuration", "must be a mapping")
    spec = NameResolutionSpec(node.text("component").strip().lower(), node.text("version"), dict(configuration))
    node.warn_unknown()
    return spec


def _pipeline(node: _Node) -> PipelineSpec:
    def handler(raw: Any, path: str) -> HandlerSpec:
        item = _Node(raw, path, node.where)
        name, kind = item.text("name"), item.text("type")
        if not name or not kind:
            raise SpecError(f"{node.where}: {path} needs a name and a type")
        selector: tuple[tuple[str, str], ...] = ()
        sub = item.node("selector")
        if sub is not None:

            def pair(raw_field: Any, field_path: str) -> tuple[str, str]:
                entry = _Node(raw_field, field_path, node.where)
                found = entry.text("field"), entry.text("value")
                entry.warn_unknown()
                return found

            selector = sub.items("fields", pair)
            sub.warn_unknown()
        spec = HandlerSpec(name, kind.strip().lower(), item.text("version"), selector)
        item.warn_unknown()
        return spec

    spec = PipelineSpec(node.items("handlers", handler))
    node.warn_unknown()
    return spec


def _action(node: _Node, name: str) -> str:
    action = node.text(name).strip().lower()
    if action not in ("", "allow", "deny"):
        raise node.error(name, f"must be allow or deny: {action!r}")
    return action


def _access_control(node: _Node) -> AccessControlSpec:
    def operation(raw: Any, path: str) -> AppOperationSpec:
        item = _Node(raw, path, node.where)
        name = item.text("name")
        if not name:
            raise item.error("name", "is missing")
        spec = AppOperationSpec(name, item.texts("httpVerb"), _action(item, "action"))
        item.warn_unknown()
        return spec

    def policy(raw: Any, path: str) -> AppPolicySpec:
        item = _Node(raw, path, node.where)
        spec = AppPolicySpec(
            app_id=item.text("appId"),
            default_action=_action(item, "defaultAction"),
            trust_domain=item.text("trustDomain"),
            namespace=item.text("namespace"),
            operations=item.items("operations", operation),
        )
        item.warn_unknown()
        return spec

    spec = AccessControlSpec(_action(node, "defaultAction"), node.text("trustDomain"), node.items("policies", policy))
    node.warn_unknown()
    # daprd refuses a policy without its app id, trust domain or namespace, naming them all in one line.
    missing_app = any(not p.app_id for p in spec.policies)
    no_domain = [p.app_id for p in spec.policies if p.app_id and not p.trust_domain]
    no_namespace = [p.app_id for p in spec.policies if p.app_id and not p.namespace]
    if missing_app or no_domain or no_namespace:
        raise SpecError(
            f"{node.where}: {node.path}.policies: invalid access control spec. missing trustdomain for apps: "
            f"[{' '.join(no_domain)}], missing namespace for apps: [{' '.join(no_namespace)}], "
            f"missing app name on at least one of the app policies: {str(missing_app).lower()}"
        )
    return spec


def _secret_scopes(node: _Node) -> tuple[SecretsScopeSpec, ...]:
    def scope(raw: Any, path: str) -> SecretsScopeSpec:
        item = _Node(raw, path, node.where)
        store = item.text("storeName")
        if not store:
            raise item.error("storeName", "is missing")
        spec = SecretsScopeSpec(
            store, _action(item, "defaultAccess"), item.texts("allowedSecrets"), item.texts("deniedSecrets")
        )
        item.warn_unknown()
        return spec

    scopes = node.items("scopes", scope)
    node.warn_unknown()
    seen: set[str] = set()
    for spec in scopes:
        if spec.store_name in seen:
            raise SpecError(
                f"{node.where}: {node.path}.scopes: {spec.store_name} storeName is repeated in secrets configuration"
            )
        seen.add(spec.store_name)
    return scopes


def _api(node: _Node) -> ApiSpec:
    def rule(raw: Any, path: str) -> ApiAccessRule:
        item = _Node(raw, path, node.where)
        name, version = item.text("name"), item.text("version")
        if not name or not version:
            raise SpecError(f"{node.where}: {path} needs a name and a version")
        protocol = item.text("protocol").strip().lower()
        if protocol not in ("", "http", "grpc"):
            raise item.error("protocol", f"must be http or grpc: {protocol!r}")
        item.warn_unknown()
        return ApiAccessRule(name, version, protocol)

    spec = ApiSpec(node.items("allowed", rule), node.items("denied", rule))
    node.warn_unknown()
    return spec


def _feature(raw: Any, path: str, where: str) -> FeatureSpec:
    item = _Node(raw, path, where)
    name = item.text("name")
    if not name:
        raise item.error("name", "is missing")
    spec = FeatureSpec(name, item.flag("enabled"))
    item.warn_unknown()
    return spec


def _read(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        documents = [d for d in safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: malformed YAML: {' '.join(str(exc).split())}") from None
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "Configuration":
            meta = document.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            return document, f"{path}: configuration '{name or '?'}'"
    raise SpecError(f"{path}: no 'kind: Configuration' document in the file")


def load_configuration(path: Path) -> ConfigurationSpec:
    """The Configuration in the file at ``path``; ``SpecError`` naming the file and field if it is malformed."""
    document, where = _read(path)
    spec_raw = document.get("spec")
    spec = _Node({} if spec_raw is None else spec_raw, "spec", where)
    tracing, logging_node = spec.node("tracing"), spec.node("logging")
    name_resolution, access = spec.node("nameResolution"), spec.node("accessControl")
    pipeline, app_pipeline = spec.node("httpPipeline"), spec.node("appHttpPipeline")
    secrets, api = spec.node("secrets"), spec.node("api")
    metrics = [node for node in (spec.node("metric"), spec.node("metrics")) if node is not None]
    meta = document.get("metadata")
    configuration = ConfigurationSpec(
        name=str(meta.get("name") or "") if isinstance(meta, dict) else "",
        source=str(path),
        tracing=_tracing(tracing) if tracing is not None else None,
        metrics=_metrics(metrics),
        api_logging=_api_logging(logging_node) if logging_node is not None else ApiLoggingSpec(),
        name_resolution=_name_resolution(name_resolution) if name_resolution is not None else None,
        http_pipeline=_pipeline(pipeline) if pipeline is not None else PipelineSpec(),
        app_http_pipeline=_pipeline(app_pipeline) if app_pipeline is not None else PipelineSpec(),
        access_control=_access_control(access) if access is not None else None,
        secret_scopes=_secret_scopes(secrets) if secrets is not None else (),
        api=_api(api) if api is not None else ApiSpec(),
        features=spec.items("features", lambda item, item_path: _feature(item, item_path, where)),
    )
    spec.warn_unknown(frozenset(_NOT_APPLIED))
    return configuration
