"""The ``Dapr`` servicer: every block's methods on the wheel's generated ``DaprServicer``.

Methods of APIs this sidecar has no block for answer UNIMPLEMENTED naming the API (the generated default
says only "Method not implemented!").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from dapr.proto.runtime.v1 import dapr_pb2, dapr_pb2_grpc

from app.governance.grpc_access import refuse_blocked
from app.grpc.dapr.base import Context
from app.grpc.dapr.configuration import ConfigurationMethods
from app.grpc.dapr.invoke import InvokeMethods
from app.grpc.dapr.lock import LockMethods
from app.grpc.dapr.metadata import MetadataMethods
from app.grpc.dapr.pubsub import PubSubMethods
from app.grpc.dapr.secrets import SecretMethods
from app.grpc.dapr.state import StateMethods
from app.grpc.dapr.streaming import StreamingMethods
from app.grpc.registration import handler

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("DaprService", "api_of", "serve")

#: The API a method belongs to, by a part of its name (first match wins).
_APIS = (
    ("Actor", "actors"),
    ("Workflow", "workflow"),
    ("Job", "jobs"),
    ("Subtle", "cryptography"),
    ("crypt", "cryptography"),
    ("Converse", "conversation"),
    ("Binding", "bindings"),
    ("BinaryFile", "binary store"),
    ("Vector", "vector store"),
    ("Collection", "vector store"),
    ("Index", "search"),
    ("Document", "search"),
    ("Search", "search"),
)


def api_of(method: str) -> str:
    return next((api for part, api in _APIS if part in method), method)


class DaprService(
    StateMethods,
    PubSubMethods,
    StreamingMethods,
    InvokeMethods,
    LockMethods,
    ConfigurationMethods,
    SecretMethods,
    MetadataMethods,
    dapr_pb2_grpc.DaprServicer,
):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)


def _unimplemented(method: str) -> Any:
    message = f"{method}: the {api_of(method)} API is not implemented by this sidecar"

    async def refuse(self: DaprService, request: Any, context: Context) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    refuse.__name__ = method
    return refuse


_METHODS = [name for name in dir(dapr_pb2_grpc.DaprServicer) if not name.startswith("_")]
for _method in _METHODS:
    if getattr(DaprService, _method) is getattr(dapr_pb2_grpc.DaprServicer, _method):
        setattr(DaprService, _method, _unimplemented(_method))


def serve(runtime: Runtime) -> tuple[DaprService, grpc.GenericRpcHandler]:
    """The servicer, and the handler serving it."""
    service = DaprService(runtime)
    refuse_blocked(service, _METHODS, runtime)  # spec.api (app.governance): nothing when no gRPC rule
    return service, handler(service, dapr_pb2.DESCRIPTOR.services_by_name["Dapr"], runtime)
