"""The memoized records (``api_request``, ``app_invocation``, ``app_call``) write exactly what the plain ones
(``http_server`` with ``invocation_sent``/``invocation_answered``, ``http_client``), computing every label each
call, write: the exposition is compared byte for byte, under every ``spec.metrics.http`` setting and label
rules, with more distinct keys than a memo keeps (so it starts over mid-way)."""

from __future__ import annotations

import random

import pytest

from app.observability import metrics as metrics_module
from app.observability.front import count_request, invoked_app
from app.observability.instruments import Histogram, exposition
from app.observability.metrics import DaprMetrics
from building_blocks.configuration_spec import MetricLabelSpec, MetricRuleSpec, MetricsHttpSpec, MetricsSpec

_RULES = (
    MetricRuleSpec("dapr_http_server_request_count", (MetricLabelSpec("path", (("/orders/", "/orders/.+"),)),)),
    MetricRuleSpec("dapr_http_server_latency", (MetricLabelSpec("path", (("/v1.0/state/", "/v1.0/state/.+"),)),)),
    MetricRuleSpec(
        "dapr_runtime_service_invocation_req_sent_total", (MetricLabelSpec("dst_app_id", (("app", "app[0-9]+"),)),)
    ),
    MetricRuleSpec(
        "dapr_runtime_service_invocation_res_recv_latency_ms", (MetricLabelSpec("status", (("5xx", "5.."),)),)
    ),
    MetricRuleSpec("dapr_http_client_completed_count", (MetricLabelSpec("path", (("/orders/", "/orders/.+"),)),)),
    MetricRuleSpec("dapr_http_client_sent_bytes", (MetricLabelSpec("method", (("WRITE", "P.+"),)),)),
)

SPECS = {
    "default": MetricsSpec(),
    "low-cardinality": MetricsSpec(http=MetricsHttpSpec(increased_cardinality=False)),
    "path-matching": MetricsSpec(
        http=MetricsHttpSpec(False, ("/orders/{id}", "/orders/{id}/items/{rest...}", "/static/", "/v1.0/state/{s}"))
    ),
    "legacy-path-matching": MetricsSpec(http=MetricsHttpSpec(True, ("/orders/{id}", "GET /v1.0/invoke/a/method/x"))),
    "exclude-verbs": MetricsSpec(http=MetricsHttpSpec(exclude_verbs=True)),
    "rules": MetricsSpec(rules=_RULES, latency_buckets_ms=(1, 5, 10, 50)),
}


def _calls(count: int) -> list[tuple[str, str, int, int, int, float]]:
    """(method, path with its query, status, received, sent, seconds): repeats mixed with new keys."""
    rng = random.Random(7)
    methods = ("GET", "POST", "PUT", "DELETE", "WEIRD")
    fixed = (
        "/v1.0/state/mystore/key",
        "/v1.0/state/mystore",
        "/v1.0/secrets/vault/a/b",
        "/v1.0/actors/Demo/1/method/m",
        "/actors/Demo/1/method/m",
        "/v1.0/invoke/app1/method/orders/1",
        "/v1.0/invoke/app2/method/orders/1/items/a/b",
        "/v1.0/invoke/a/method/x",
        "/v1.0/invoke/",
        "/v1.0/invoke/app1",
        "/static/css/x.css",
        "/dapr/config",
        "/healthz",
        "/v1.0/healthz",
        "",
        '/q"uo\\te',
    )
    seconds = (0.0, 0.0004, 0.001, 0.0049, 0.005, 0.0101, 0.3, 7.5, 1e9)
    calls = []
    for index in range(count):
        if index % 3:
            path = rng.choice(fixed)
        else:  # a new key, mostly
            path = rng.choice((f"/v1.0/invoke/app{index % 11}/method/orders/{index}", f"/orders/{index}"))
        if index % 5 == 0:
            path += f"?page={index % 4}"
        calls.append(
            (
                rng.choice(methods),
                path,
                rng.choice((200, 204, 404, 500, 503)),
                rng.choice((0, 100, 1024, 1025, 5_000_000)),
                rng.choice((0, 10, 2048, 70_000)),
                rng.choice(seconds),
            )
        )
    return calls


@pytest.mark.parametrize("name", SPECS)
def test_memoized_records_write_what_plain_ones_do(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "_SERIES_LIMIT", 64)  # ~25 times more distinct keys than kept
    spec = SPECS[name]
    memoized, plain = DaprMetrics("app", "default", spec), DaprMetrics("app", "default", spec)
    for method, target, status, received, sent, seconds in _calls(5000):
        path = target.partition("?")[0]
        headers = [(b"host", b"x"), (b"content-length", str(received).encode())]
        count_request(memoized, {"method": method, "path": path, "headers": headers}, status, sent, seconds)
        plain.http_server(method, path, status, received, sent, seconds)
        app = invoked_app(path)
        if app:
            plain.invocation_sent(app)
            plain.invocation_answered(app, status, seconds)
        memoized.app_invocation(method, target.encode(), status, received, sent, seconds)
        plain.http_client(method, path, status, received, sent, seconds)
        memoized.app_call(method, path, status, sent, received, seconds, False)
        plain.http_client(method, path, status, sent, received, seconds)
        assert len(memoized._api) <= 64 and len(memoized._invocations) <= 64 and len(memoized._app_calls) <= 64
    text = memoized.exposition()
    assert text == plain.exposition()
    assert "dapr_http_server_request_count" in text and "dapr_http_client_completed_count" in text
    assert "dapr_runtime_service_invocation_res_recv_latency_ms" in text


def test_a_new_request_series_is_added_when_first_recorded() -> None:
    """The memo makes a series' cells at its first record, not before: families appear as they did."""
    memoized, plain = DaprMetrics("app", "default", MetricsSpec()), DaprMetrics("app", "default", MetricsSpec())
    assert memoized.exposition() == ""
    memoized.api_request("GET", "/v1.0/state/s/k", 200, 0, 2, 0.001)
    plain.http_server("GET", "/v1.0/state/s/k", 200, 0, 2, 0.001)
    assert memoized.exposition() == plain.exposition()
    assert "invocation" not in memoized.exposition() and "client" not in memoized.exposition()


def test_histogram_count_is_every_observation() -> None:
    """A histogram keeps no count of its own: ``_count`` is its buckets' total, +Inf's included."""
    histogram = Histogram("h", "H.", ("k",), (1, 10), with_app_id=False)
    for value in (0, 1, 2, 10, 11, 1e300, -5, 0.5, 1e-9):
        histogram.observe(("a",), value)
    histogram.observe(("b",), 3)
    text = exposition([histogram], "app")
    assert 'h_bucket{k="a",le="+Inf"} 9\n' in text and 'h_count{k="a"} 9\n' in text
    assert 'h_bucket{k="b",le="10"} 1\n' in text and 'h_count{k="b"} 1\n' in text
    assert 'h_sum{k="b"} 3\n' in text


_HOP_RULES = MetricsSpec(
    rules=(
        MetricRuleSpec(
            "dapr_runtime_service_invocation_req_recv_total", (MetricLabelSpec("src_app_id", (("app", "app[0-9]+"),)),)
        ),
        MetricRuleSpec(
            "dapr_runtime_service_invocation_res_sent_total", (MetricLabelSpec("status", (("5xx", "5.."),)),)
        ),
    )
)


@pytest.mark.parametrize("name", [*SPECS, "hop-rules"])
def test_a_hop_served_is_counted_as_received_then_responded(name: str) -> None:
    """``invocation_served`` (the lane's one call per hop) writes what ``invocation_received`` and
    ``invocation_responded`` write, byte for byte, label rules included."""
    spec = _HOP_RULES if name == "hop-rules" else SPECS[name]
    combined, plain = DaprMetrics("app", "default", spec), DaprMetrics("app", "default", spec)
    rng = random.Random(11)
    callers = ("caller", "app1", "app22", "", '"q\\uo', "ünï")
    for _ in range(2000):
        caller, status = rng.choice(callers), rng.choice((200, 204, 404, 500, 503))
        combined.invocation_served(caller, status)
        plain.invocation_received(caller)
        plain.invocation_responded(caller, status)
    text = combined.exposition()
    assert text == plain.exposition()
    assert "dapr_runtime_service_invocation_req_recv_total" in text
    assert "dapr_runtime_service_invocation_res_sent_total" in text
    if name == "hop-rules":  # the rules applied on both ways
        assert 'src_app_id="app"}' in text and 'status="5xx"}' in text and 'src_app_id="app1"' not in text
