"""Errors on the gRPC wire: a ``WireError`` of the one table (``app.errors``) as a status with its details.

Details travel as ``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer, as grpc-go sends them;
the status' code and message equal the call's, or the SDKs' ``rpc_status.from_call`` refuses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.protobuf.json_format import ParseDict
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from app.errors import BAD_REQUEST, ERROR_INFO, HELP, RESOURCE_INFO, WireError, describe_error

__all__ = ("abort", "abort_with", "status_metadata")

_DETAIL_TYPES: dict[str, type[Message]] = {
    ERROR_INFO: error_details_pb2.ErrorInfo,
    RESOURCE_INFO: error_details_pb2.ResourceInfo,
    BAD_REQUEST: error_details_pb2.BadRequest,
    HELP: error_details_pb2.Help,
}


def _detail(detail: dict[str, Any]) -> any_pb2.Any:
    fields = {name: value for name, value in detail.items() if name != "@type" and value is not None}
    message = ParseDict(fields, _DETAIL_TYPES[detail["@type"]]())
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _details(error: WireError) -> Sequence[any_pb2.Any]:
    if error.details:
        return [_detail(detail) for detail in error.details]
    if error.reason:
        info = error_details_pb2.ErrorInfo(reason=error.reason, domain="dapr.io")
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]
    return []


def status_metadata(error: WireError) -> tuple[tuple[str, bytes], ...]:
    """The trailer carrying ``error``'s details, or none when it has none (a legacy Dapr error)."""
    details = _details(error)
    if not details:
        return ()
    status = status_pb2.Status(code=int(error.grpc_code), message=error.message, details=details)
    return (("grpc-status-details-bin", status.SerializeToString()),)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: WireError) -> NoReturn:
    await context.abort(_STATUS[int(error.grpc_code)], error.message, status_metadata(error))
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception, app_id: str) -> NoReturn:
    """End the call with Dapr's status for ``exc`` (a domain error; anything else is logged as a bug)."""
    await abort_with(context, describe_error(exc, app_id))


_STATUS: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}
