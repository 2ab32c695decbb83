"""One trace across real processes: app -> sidecar -> sidecar -> app -> state store, to a real receiver."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy
from tests.observability.receiver import ReceivedSpan, Receiver
from tests.observability.test_metrics import value
from tests.observability.test_tracing import config, of_trace, traceparent

APP = Path(__file__).parent / "apps" / "trace_app.py"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def _tree(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.span_id: span for span in spans}


@pytest.mark.timeout(240)
def test_app_to_sidecar_to_sidecar_to_app_to_state_store(receiver: Receiver, tmp_path: Path) -> None:
    """One trace across two sidecar processes: each hop's span is the parent of the next."""
    home = {"HOME": str(tmp_path)}
    path = config(tmp_path / "c.yaml", f"samplingRate: '1'\nzipkin: {{endpointAddress: '{receiver.zipkin_url}'}}")
    ports = {"a": free_port(), "b": free_port()}
    metrics = {"a": free_port(), "b": free_port()}
    common = ["-c", str(path), "--log-level", "warning"]
    callee = layotto("--app-id", "traced-b", "-H", str(ports["b"]), "-G", str(free_port()), "-p", str(free_port()),
                     "-M", str(metrics["b"]), *common, sys.executable, str(APP), env=home)  # fmt: skip
    caller = layotto("--app-id", "traced-a", "-H", str(ports["a"]), "-G", str(free_port()), "-M", str(metrics["a"]),
                     *common, env=home)  # fmt: skip
    try:
        wait_healthy(ports["b"], 60, callee)
        wait_healthy(ports["a"], 60, caller)
        deadline = time.monotonic() + 60
        while True:  # the callee's app may still be starting
            parent, trace_id, app_span = traceparent()  # a trace of its own for each attempt
            answer = httpx.get(
                f"http://127.0.0.1:{ports['a']}/v1.0/invoke/traced-b/method/work",
                headers={"traceparent": parent},
                timeout=30,
            )
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == 204
        spans = [s for s in receiver.wait_for(of_trace(trace_id, 4)) if s.trace_id == trace_id]
        caller_metrics = httpx.get(f"http://127.0.0.1:{metrics['a']}/metrics", timeout=10).text
        callee_metrics = httpx.get(f"http://127.0.0.1:{metrics['b']}/metrics", timeout=10).text
    finally:
        for process in (caller, callee):
            stop(process)
    by_id = _tree(spans)
    api_a = next(s for s in spans if s.service == "traced-a" and s.kind == "SERVER")
    hop_b = next(s for s in spans if s.service == "traced-b" and s.name == "CallLocal/traced-b/work")
    api_b = next(s for s in spans if s.service == "traced-b" and s.name == "/v1.0/state/statestore/traced")
    store_b = next(s for s in spans if s.service == "traced-b" and s.name == "state.get statestore")
    assert api_a.name == "CallLocal/traced-b/work" and api_a.parent_id == app_span
    assert hop_b.parent_id == api_a.span_id and hop_b.kind == "SERVER"
    assert api_b.parent_id == hop_b.span_id  # the app passed on the traceparent the hop gave it
    assert store_b.parent_id == api_b.span_id and store_b.kind == "CLIENT"
    assert answer.json()["traceparent"] == f"00-{trace_id}-{hop_b.span_id}-01"
    assert all(span.parent_id in by_id or span.parent_id == app_span for span in spans)
    # the invocation in daprd's metrics, on both sides
    assert (
        value(caller_metrics, "dapr_runtime_service_invocation_req_sent_total", dst_app_id="traced-b", type="unary")
        >= 1
    )
    assert (
        value(caller_metrics, "dapr_runtime_service_invocation_res_recv_total", src_app_id="traced-b", status="200")
        == 1
    )
    assert value(callee_metrics, "dapr_runtime_service_invocation_req_recv_total", src_app_id="traced-a") >= 1
    assert (
        value(callee_metrics, "dapr_runtime_service_invocation_res_sent_total", dst_app_id="traced-a", status="200")
        == 1
    )
