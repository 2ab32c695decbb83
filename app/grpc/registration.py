"""Registering a servicer from its service descriptor, so that every method is guarded (``app.grpc.guard``)
and a request that does not decode as its message reaches it as ``Malformed`` (INVALID_ARGUMENT: the client's
mistake), where the generated ``add_*Servicer_to_server`` would let grpcio answer INTERNAL."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from app.grpc.guard import Malformed, guard

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("handler",)

_HANDLERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return Malformed(str(exc) or "not a protobuf message")

    return deserialize


def handler(servicer: Any, service: ServiceDescriptor, runtime: Runtime) -> grpc.GenericRpcHandler:
    """The handler serving ``servicer``'s methods, guarded, for every method of ``service``."""
    handlers = {}
    for method in service.methods:
        streamed = method.client_streaming
        behaviour = guard(getattr(servicer, method.name), runtime, streamed)
        request, response = GetMessageClass(method.input_type), GetMessageClass(method.output_type)
        make = _HANDLERS[(streamed, method.server_streaming)]
        handlers[method.name] = make(
            behaviour, request_deserializer=_lenient(request.FromString), response_serializer=response.SerializeToString
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
