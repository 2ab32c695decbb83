"""A gRPC app with one method of each kind, for proxying by ``dapr-app-id`` (``app.grpc.proxy``). Messages are
``google.protobuf.StringValue``s, so no generated code is needed; the methods, under ``test.Streams``:

* ``Echo`` (unary): the metadata the app received, as JSON (what crossed the sidecars, who the caller is);
* ``Count`` (server streaming): ``"n"`` -> ``"0"``, ..., ``"n-1"``, with a header and a trailer;
* ``Sum`` (client streaming): the sum of the numbers sent;
* ``Chat`` (bidirectional): each message echoed as it arrives; ``"abort"`` ends the call with
  FAILED_PRECONDITION, a trailer and an ErrorInfo detail;
* ``Flood`` (server streaming): ``"n"`` messages of 256 KiB as fast as the caller takes them; ``produced``
  counts them (a call that ends before the last one is counted as ``Forever``'s cancellations);
* ``Forever`` (server streaming): a message every 20 ms until the caller goes away; each cancellation
  is counted (``cancelled``, and a line in ``$RECORD`` when set).

It also serves Dapr's ``AppCallback.OnInvoke`` (``Invoked``): the ``InvokeRequest`` as it arrived, as JSON
(whether it has an ``http_extension``, the verb's name, the query string, the metadata).

Run as ``python -m tests.grpc.apps.streams_app`` (``APP_PORT``) or serve in-process with ``serve``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2_grpc
from google.protobuf import any_pb2, wrappers_pb2
from google.rpc import error_details_pb2, status_pb2

SERVICE = "test.Streams"
Context = Any  # grpc.aio.ServicerContext: not generic at run time


def text(message: wrappers_pb2.StringValue) -> str:
    return str(message.value)


def value(content: str) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value=content)


class Streams:
    def __init__(self) -> None:
        self.cancelled = 0
        self.produced = 0
        self.record = os.environ.get("RECORD", "")

    async def echo(self, request: wrappers_pb2.StringValue, context: Context) -> wrappers_pb2.StringValue:
        seen = [(k, v) for k, v in context.invocation_metadata() if isinstance(v, str)]
        return value(json.dumps({"metadata": seen, "request": text(request)}))

    async def count(
        self, request: wrappers_pb2.StringValue, context: Context
    ) -> AsyncIterator[wrappers_pb2.StringValue]:
        await context.send_initial_metadata((("app-header", "counting"),))
        for index in range(int(text(request))):
            yield value(str(index))
        context.set_trailing_metadata((("app-trailer", "counted"),))

    async def sum(
        self, requests: AsyncIterator[wrappers_pb2.StringValue], context: Context
    ) -> wrappers_pb2.StringValue:
        total = 0
        async for request in requests:
            total += int(text(request))
        return value(str(total))

    async def chat(
        self, requests: AsyncIterator[wrappers_pb2.StringValue], context: Context
    ) -> AsyncIterator[wrappers_pb2.StringValue]:
        async for request in requests:
            if text(request) == "abort":
                info = any_pb2.Any()
                info.Pack(error_details_pb2.ErrorInfo(reason="ASKED", domain="test.app"))
                code = grpc.StatusCode.FAILED_PRECONDITION
                status = status_pb2.Status(code=code.value[0], message="asked to abort", details=[info])
                trailers = (("app-trailer", "aborted"), ("grpc-status-details-bin", status.SerializeToString()))
                await context.abort(code, "asked to abort", trailers)
            yield value("echo:" + text(request))

    async def flood(
        self, request: wrappers_pb2.StringValue, context: Context
    ) -> AsyncIterator[wrappers_pb2.StringValue]:
        chunk, finished = "x" * (256 << 10), False

        def ended(_: Context) -> None:  # grpcio leaves a write the caller will never take pending: the call's end
            if not finished:
                self.cancelled += 1

        context.add_done_callback(ended)
        for _ in range(int(text(request))):
            yield value(chunk)
            self.produced += 1
        finished = True

    async def forever(
        self, request: wrappers_pb2.StringValue, context: Context
    ) -> AsyncIterator[wrappers_pb2.StringValue]:
        index = 0
        try:
            while True:
                yield value(f"{text(request)}{index}")
                index += 1
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            self.cancelled += 1
            if self.record:
                with open(self.record, "a") as out:
                    out.write("cancelled\n")
            raise

    def handler(self) -> grpc.GenericRpcHandler:
        decode, encode = wrappers_pb2.StringValue.FromString, wrappers_pb2.StringValue.SerializeToString
        methods = {
            "Echo": grpc.unary_unary_rpc_method_handler(self.echo, decode, encode),
            "Count": grpc.unary_stream_rpc_method_handler(self.count, decode, encode),
            "Sum": grpc.stream_unary_rpc_method_handler(self.sum, decode, encode),
            "Chat": grpc.stream_stream_rpc_method_handler(self.chat, decode, encode),
            "Flood": grpc.unary_stream_rpc_method_handler(self.flood, decode, encode),
            "Forever": grpc.unary_stream_rpc_method_handler(self.forever, decode, encode),
        }
        return grpc.method_handlers_generic_handler(SERVICE, methods)


class Invoked(appcallback_pb2_grpc.AppCallbackServicer):
    async def OnInvoke(self, request: common_pb2.InvokeRequest, context: Context) -> common_pb2.InvokeResponse:
        present = request.HasField("http_extension")
        seen = {
            "method": request.method,
            "data": request.data.value.decode(),
            "content_type": request.content_type,
            "has_extension": present,
            "verb": common_pb2.HTTPExtension.Verb.Name(request.http_extension.verb) if present else None,
            "querystring": request.http_extension.querystring,
            "metadata": [(k, v) for k, v in context.invocation_metadata() if isinstance(v, str)],
        }
        return common_pb2.InvokeResponse(
            data=any_pb2.Any(value=json.dumps(seen).encode()), content_type="application/json"
        )


async def serve(port: int, streams: Streams | None = None) -> grpc.aio.Server:
    """The app on ``127.0.0.1:port``, started."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(((streams or Streams()).handler(),))
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(Invoked(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


async def _main() -> None:
    server = await serve(int(os.environ["APP_PORT"]))
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(_main())
