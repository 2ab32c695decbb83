"""The floor for any Python gRPC hop: a bare grpcio asyncio server (uvloop, as the sidecar runs) serving
Dapr's ``GetState`` and ``PublishEvent`` with nothing between grpcio and the backend call: no guard, no
block, no error table. ``GetState`` is ``state.redis``'s read script on ``<redis-app-id>||key`` and
``PublishEvent`` an ``XADD <topic> * data <data>``, the very calls of the direct baselines
(``perf.clients``), so "direct", "bare gRPC" and "sidecar gRPC" differ only by the hops in front of them.

``python -m perf.grpc_baseline --port P --redis 127.0.0.1:6379 --redis-app-id ID``.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
from dapr.proto.runtime.v1 import pubsub_pb2, state_pb2
from google.protobuf import empty_pb2

from building_blocks._common.redis import execute
from perf.clients import RedisState, redis_client, state_key

__all__ = ("SERVICE", "serve")

SERVICE = "dapr.proto.runtime.v1.Dapr"
_EMPTY = empty_pb2.Empty()


def _handlers(redis: str, app_id: str) -> grpc.GenericRpcHandler:
    client = redis_client(redis)
    store = RedisState(client)

    async def get_state(request: state_pb2.GetStateRequest, context: object) -> state_pb2.GetStateResponse:
        found = await store.get(state_key(app_id, request.key))
        return state_pb2.GetStateResponse(data=found) if found is not None else state_pb2.GetStateResponse()

    async def publish_event(request: pubsub_pb2.PublishEventRequest, context: object) -> empty_pb2.Empty:
        await execute(client, "XADD", request.topic, "*", "data", request.data)
        return _EMPTY

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "GetState": grpc.unary_unary_rpc_method_handler(
                get_state,
                request_deserializer=state_pb2.GetStateRequest.FromString,
                response_serializer=state_pb2.GetStateResponse.SerializeToString,
            ),
            "PublishEvent": grpc.unary_unary_rpc_method_handler(
                publish_event,
                request_deserializer=pubsub_pb2.PublishEventRequest.FromString,
                response_serializer=empty_pb2.Empty.SerializeToString,
            ),
        },
    )


async def serve(port: int, redis: str, app_id: str) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handlers(redis, app_id),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", default="127.0.0.1:6379")
    parser.add_argument("--redis-app-id", default="perf-redis")
    args = parser.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(args.port, args.redis, args.redis_app_id))


if __name__ == "__main__":
    main()
