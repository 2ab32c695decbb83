"""The gRPC server's transport settings: the SDKs' keepalive pings are accepted (daprd allows one every 8 s
without calls; grpc core's default would answer the third with GOAWAY ``too_many_pings``, and the client's
channel would drop to IDLE)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.grpc.harness import grpc_sidecar

#: Pings every 10 s without calls (the Java SDK's DAPR_GRPC_ENABLE_KEEP_ALIVE settings).
CLIENT_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 10000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
#: Long enough for four pings: a server refusing them sends GOAWAY after the third.
IDLE_SECONDS = 42


@pytest.mark.timeout(180)
def test_keepalive_pings_every_10s_keep_an_idle_channel_ready(tmp_path: Path) -> None:
    with (
        grpc_sidecar(tmp_path) as sidecar,
        grpc.insecure_channel(sidecar.grpc_address, options=CLIENT_KEEPALIVE) as channel,
    ):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)  # type: ignore[attr-defined]
        states: set[grpc.ChannelConnectivity] = set()
        channel.subscribe(states.add, try_to_connect=False)
        deadline = time.monotonic() + IDLE_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.5)
        channel.unsubscribe(states.add)
    assert states == {grpc.ChannelConnectivity.READY}, states
