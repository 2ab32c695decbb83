"""Service invocation: ``InvokeService``, through the same invocation block as ``/v1.0/invoke``.

The request's ``http_extension`` gives the verb and the raw query string; the call's metadata travels as
headers, as daprd passes it. Without an extension, or with verb NONE, daprd hands the request to a gRPC app
as it came and its HTTP channel refuses it (InvalidArgument, wrapped in ERR_DIRECT_INVOKE): so an HTTP app
of this sidecar refuses it here, and the call crosses the hop as a POST marked ``layotto-http-extension``
(``absent``/``none``), which the callee's gRPC channel turns back into the request as it was sent.

The callee's non-2xx answer becomes daprd's error: the gRPC code of its HTTP status (``CodeFromHTTPStatus``),
the status text as message, and ErrorInfo with ``http.code`` and the start of the body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from http import HTTPStatus
from typing import Any

import orjson
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import invoke_pb2
from google.protobuf import any_pb2

from app.errors import ApiError, GrpcCode, WireError
from app.grpc.dapr.base import Context, Part
from app.grpc.status import abort_with
from building_blocks.errors import InvalidRequest, InvocationFailed
from building_blocks.invocation.base import SIDECAR_ERROR, Call
from building_blocks.invocation.body import RequestBody
from building_blocks.invocation.headers import Headers
from building_blocks.invocation.targets import TargetKind, parse_target

__all__ = ("EXTENSION_HEADER", "InvokeMethods")

_VERB = common_pb2.HTTPExtension.Verb
#: daprd's gRPC code for a callee's HTTP status (pkg/messaging/v1/util.go CodeFromHTTPStatus).
_CODE_OF_HTTP = {
    400: GrpcCode.INTERNAL,
    401: GrpcCode.UNAUTHENTICATED,
    403: GrpcCode.PERMISSION_DENIED,
    404: GrpcCode.NOT_FOUND,
    408: GrpcCode.CANCELLED,
    409: GrpcCode.ALREADY_EXISTS,
    429: GrpcCode.RESOURCE_EXHAUSTED,
    500: GrpcCode.UNKNOWN,
    501: GrpcCode.UNIMPLEMENTED,
    503: GrpcCode.UNAVAILABLE,
    504: GrpcCode.DEADLINE_EXCEEDED,
}
#: Marks a request without ``http_extension`` (``absent``) or with verb NONE (``none``) for the callee's channel.
EXTENSION_HEADER = "layotto-http-extension"
_SKIPPED = frozenset({"dapr-api-token", "content-type", "content-length", "user-agent", "te", "host", EXTENSION_HEADER})


def headers_of(metadata: Iterable[tuple[str, Any]], content_type: str) -> Headers:
    """The call's metadata as the callee's headers (gRPC's own and binary keys left out)."""
    headers: Headers = [
        (key.encode("latin-1"), value.encode("latin-1"))
        for key, value in metadata
        if isinstance(value, str) and key not in _SKIPPED and not key.startswith((":", "grpc-"))
    ]
    if content_type:
        headers.append((b"content-type", content_type.encode("latin-1")))
    return headers


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


#: Where Go's ``http.StatusText`` (daprd's wording) differs from Python's phrase.
_GO_TEXT = {414: "Request URI Too Long", 418: "I'm a teapot"}


def _phrase(status: int) -> str:
    """Go's text for ``status`` ("" for a status it does not know, as Go)."""
    try:
        return _GO_TEXT.get(status) or HTTPStatus(status).phrase
    except ValueError:
        return ""


def _message_of(body: bytes) -> str:
    """The ``message`` of a sidecar's error body (``{"errorCode", "message"}``)."""
    try:
        message = orjson.loads(body).get("message")
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    return message if isinstance(message, str) else body.decode(errors="replace")


def _failure(status: int, body: bytes) -> WireError:
    phrase = _phrase(status)
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": phrase,
        "domain": "dapr.io",
        "metadata": {"http.code": str(status), "http.error_message": body[:63].decode(errors="replace")},
    }
    return WireError(status, phrase, phrase, [info], _CODE_OF_HTTP.get(status, GrpcCode.UNKNOWN))


class InvokeMethods(Part):
    def _without_verb(self, target: str, present: bool) -> Headers:
        """The marker of a request without a verb for an app's channel; refused when this sidecar's own HTTP
        app is the target. An HTTPEndpoint or URL gets a plain POST (the marker is the sidecars' own)."""
        runtime = self.runtime
        settings = runtime.settings
        endpoints = runtime.invocation.endpoints if runtime.invocation is not None else {}
        try:
            kind = parse_target(target, settings.app_id, settings.namespace, endpoints).kind
        except InvocationFailed:
            return []  # the block words the error
        if kind is TargetKind.EXTERNAL:
            return []
        if kind is TargetKind.LOCAL and runtime.app_channel is not None and settings.app_protocol != "grpc":
            refusal = "invalid HTTP verb" if present else "missing HTTP extension field"
            raise InvocationFailed(target, f"rpc error: code = InvalidArgument desc = {refusal}")
        return [(EXTENSION_HEADER.encode(), b"none" if present else b"absent")]

    async def InvokeService(
        self, request: invoke_pb2.InvokeServiceRequest, context: Context
    ) -> common_pb2.InvokeResponse:
        invoker = self.runtime.invocation
        if invoker is None:
            raise ApiError(500, "ERR_DIRECT_INVOKE", "invoke API is not ready")
        message = request.message
        extension = message.http_extension
        verb = _VERB.Name(extension.verb) if extension.verb != _VERB.NONE else "POST"
        if verb == "CONNECT":
            raise InvalidRequest("invalid HTTP verb")
        if not request.id:
            raise InvalidRequest("failed getting app id from the request")
        data = message.data.value
        headers = headers_of(context.invocation_metadata() or (), message.content_type)
        if not message.HasField("http_extension") or extension.verb == _VERB.NONE:
            headers += self._without_verb(request.id, message.HasField("http_extension"))
        body = RequestBody(_once(data), len(data), False)
        call = Call(verb, "", extension.querystring.encode("latin-1"), headers, body)
        reply = await invoker.block.invoke(request.id, message.method, call)
        try:
            content = await reply.aread()
        finally:
            await reply.aclose()
        status = reply.status_code
        if reply.header(SIDECAR_ERROR):  # the callee's sidecar failed to deliver: daprd's INTERNAL, its message
            raise ApiError(500, "ERR_DIRECT_INVOKE", _message_of(content))
        await context.send_initial_metadata((("dapr-http-status", str(status)),))
        if not 200 <= status < 300:
            await abort_with(context, _failure(status, content))
        content_type = reply.header("content-type") or ""
        return common_pb2.InvokeResponse(data=any_pb2.Any(value=content), content_type=content_type)
