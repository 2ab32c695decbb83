"""Both fronts for the conformance suites: a case that is not HTTP-specific runs once per front, so a block's
behaviour is proven for HTTP and for gRPC. ``GrpcFront`` holds an asyncio channel to an in-process sidecar's
gRPC port with Dapr's and Layotto's stubs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from dapr.proto.runtime.v1 import dapr_pb2_grpc

from app.grpc.layotto import runtime_pb2_grpc
from tests.sidecar import Sidecar

FRONTS = ("http", "grpc")


@dataclass
class GrpcFront:
    channel: grpc.aio.Channel
    dapr: dapr_pb2_grpc.DaprStub
    layotto: runtime_pb2_grpc.RuntimeStub


@contextlib.asynccontextmanager
async def grpc_front(sidecar: Sidecar) -> AsyncIterator[GrpcFront]:
    assert sidecar.grpc_port, "start the sidecar with running_sidecar(..., grpc=True)"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        yield GrpcFront(channel, dapr_pb2_grpc.DaprStub(channel), runtime_pb2_grpc.RuntimeStub(channel))
