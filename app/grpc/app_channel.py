"""The channel into an app that speaks gRPC (``--app-protocol grpc``): Dapr's ``AppCallback`` service behind
the HTTP app channel's interface, so deliveries, health probes, ``/dapr/subscribe`` and invocations reach a
gRPC app through the same code paths as an HTTP app.

What the sidecar would send over HTTP becomes daprd's gRPC call:
* ``GET /dapr/subscribe`` -> ``ListTopicSubscriptions`` (UNIMPLEMENTED: no subscriptions);
* a CloudEvent POSTed to a route -> ``OnTopicEvent`` (its ``TopicEventResponse`` status; UNIMPLEMENTED is
  DROP, any other error RETRY, as daprd);
* a bulk envelope -> ``OnBulkTopicEvent``, then ``AppCallbackAlpha.OnBulkTopicEventAlpha1`` when the app
  has only that one (the JS SDK);
* the health probe -> ``AppCallbackHealthCheck.HealthCheck``;
* an invocation -> ``OnInvoke`` with ``http_extension`` carrying the verb and the query string; the app's
  gRPC status becomes the HTTP status daprd gives it, with the status as the JSON body.
Configuration updates have no AppCallback method in Dapr: a gRPC app subscribes with a stream instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Mapping
from time import perf_counter
from typing import Any
from urllib.parse import quote, unquote

import grpc
import orjson
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc
from google.protobuf import any_pb2, empty_pb2, json_format
from google.rpc import status_pb2

from app.app_channel import DEFAULT_TIMEOUT, AppChannel
from app.grpc.events import topic_event
from app.grpc.hop_tickets import ADDRESS_HEADER, STREAM_HEADER, TICKET_HEADER, TicketDesk
from app.http_client import ConnectError, ReadTimeout, Response

__all__ = ("GrpcAppChannel",)

log = logging.getLogger("layotto.app_channel")

_VERBS = dict(common_pb2.HTTPExtension.Verb.items())
_STATUS_NAMES = {0: "SUCCESS", 1: "RETRY", 2: "DROP"}
#: daprd's HTTP status for an app's gRPC status (grpc-gateway's HTTPStatusFromCode).
_HTTP_OF_GRPC = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
_JSON = [(b"content-type", b"application/json")]
_PROXY_METHOD = b"layotto-grpc-method"  # app.grpc.proxy.METHOD_HEADER
_STREAM = STREAM_HEADER.encode()
#: What a ticket keeps of a hop: the identity its sidecar set, and the trace.
_KEPT = frozenset({b"dapr-caller-app-id", b"dapr-caller-namespace", b"dapr-callee-app-id", b"traceparent"})
#: Request headers that are HTTP's own, not the caller's metadata.
_NOT_METADATA = frozenset({"host", "content-length", "content-type", "connection", "transfer-encoding", "te"})


def _answer(status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    """A complete answer, as the HTTP client would have read it."""
    answer = Response(None, status, headers or [])  # type: ignore[arg-type]  # no connection: already complete
    if body:
        answer._feed(body)
    answer._finish()
    answer._content = body  # read whole, as the HTTP channel's request() leaves it
    return answer


def _json(status: int, content: Any) -> Response:
    return _answer(status, orjson.dumps(content), list(_JSON))


def _route(path: str) -> str:
    return path if path.startswith("/") else "/" + path


class GrpcAppChannel(AppChannel):
    """The app at ``address:port``, over gRPC (plaintext HTTP/2)."""

    needs_verb = False  # ``OnInvoke`` takes a request without an HTTP extension as it was sent

    def __init__(
        self,
        address: str,
        port: int,
        api_token: str = "",
        max_concurrency: int = -1,
        max_message_size: int = 4 << 20,
    ) -> None:
        super().__init__(address, port, api_token, max_concurrency)
        self.exchanges = False  # invocations are gRPC calls
        host = f"[{address}]" if ":" in address else address
        self._display = f"grpc://{host}:{port}"
        self._target = f"{host}:{port}"
        self._options = [
            ("grpc.max_send_message_length", max_message_size),
            ("grpc.max_receive_message_length", max_message_size),
        ]
        self._channel: grpc.aio.Channel | None = None
        #: Tickets for streams proxied here from other sidecars (set by ``app.grpc.proxy`` when gRPC is served).
        self.tickets: TicketDesk | None = None
        #: The paths the app gave its routes, by (pubsub, topic, path as routed): the SDKs look callbacks
        #: up by the path exactly as registered ("" for a subscription without routes).
        self._paths: dict[tuple[str, str, str], str] = {}

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target, options=self._options)
        return self._channel

    def token_metadata(self) -> list[tuple[str, str]]:
        """What every call into the app carries: the app's API token, when set."""
        return self._metadata()

    def _metadata(self, extra: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
        metadata = [(key, value) for key, value in (extra or {}).items()]
        if self.api_token:
            metadata.append(("dapr-api-token", self.api_token))
        return metadata

    async def close(self) -> None:
        try:
            if self._channel is not None:
                await self._channel.close()
        finally:
            await super().close()

    # -- what the HTTP channel would have requested --------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,
        probe: bool,
    ) -> Response:
        deadline = timeout if timeout is not None else DEFAULT_TIMEOUT
        content_type = next((v for k, v in (headers or {}).items() if k.lower() == "content-type"), "")
        try:
            async with asyncio.timeout(deadline):
                if probe:
                    return await self._health()
                if method == "GET" and path == "/dapr/subscribe":
                    return await self._subscriptions()
                if method == "POST" and content_type.startswith("application/cloudevents+json"):
                    return await self._topic_event(path, content or b"", headers or {})
                if method == "POST" and content_type.startswith("application/json") and content:
                    return await self._bulk_event(path, content)
        except TimeoutError:
            raise ReadTimeout("timed out") from None
        return _answer(404)  # nothing else reaches a gRPC app (configuration updates have no callback)

    async def _call(self, call: Any, request: Any, metadata: Mapping[str, str] | None = None) -> Any:
        try:
            return await call(request, metadata=self._metadata(metadata))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise ConnectError(exc.details() or "connection refused") from None
            raise

    async def _health(self) -> Response:
        stub = appcallback_pb2_grpc.AppCallbackHealthCheckStub(self.channel)  # type: ignore[no-untyped-call]
        try:
            await self._call(stub.HealthCheck, empty_pb2.Empty())
        except grpc.aio.AioRpcError:
            return _answer(500)
        return _answer(200)

    async def _subscriptions(self) -> Response:
        stub = appcallback_pb2_grpc.AppCallbackStub(self.channel)  # type: ignore[no-untyped-call]
        try:
            answer = await self._call(stub.ListTopicSubscriptions, empty_pb2.Empty())
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return _answer(404)  # no subscriptions, not an error
            return _answer(500)
        listed = []
        for subscription in answer.subscriptions:
            rules = [{"match": rule.match, "path": rule.path} for rule in subscription.routes.rules]
            default = subscription.routes.default
            routed = [rule.path for rule in subscription.routes.rules] + [default]
            if not rules and not default:
                default = "/"  # daprd: one rule with an empty path
                routed = [""]
            for path in routed:
                self._paths[(subscription.pubsub_name, subscription.topic, _route(path))] = path
            entry: dict[str, Any] = {
                "pubsubname": subscription.pubsub_name,
                "topic": subscription.topic,
                "metadata": dict(subscription.metadata),
                "routes": {"rules": rules, "default": default},
                "deadLetterTopic": subscription.dead_letter_topic,
            }
            bulk = subscription.bulk_subscribe
            if bulk.enabled:
                entry["bulkSubscribe"] = {
                    "enabled": True,
                    "maxMessagesCount": bulk.max_messages_count or 100,
                    "maxAwaitDurationMs": bulk.max_await_duration_ms or 1000,
                }
            listed.append(entry)
        return _json(200, listed)

    def _app_path(self, pubsub: str, topic: str, path: str) -> str:
        return self._paths.get((pubsub, topic, path), path)

    async def _topic_event(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        event = topic_event(body, path)
        event.path = self._app_path(event.pubsub_name, event.topic, path)
        metadata = {k.lower(): v for k, v in headers.items() if k.lower() not in _NOT_METADATA}
        stub = appcallback_pb2_grpc.AppCallbackStub(self.channel)  # type: ignore[no-untyped-call]
        try:
            answer = await self._call(stub.OnTopicEvent, event, metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return _json(200, {"status": "DROP"})
            log.warning("OnTopicEvent failed: %s %s", exc.code().name, exc.details())
            return _answer(500)
        return _json(200, {"status": _STATUS_NAMES.get(answer.status, "RETRY")})

    async def _bulk_event(self, path: str, body: bytes) -> Response:
        envelope = orjson.loads(body)
        pubsub, topic = envelope.get("pubsubname", ""), envelope.get("topic", "")
        entries = []
        for entry in envelope.get("entries", []):
            event = entry.get("event")
            content_type = entry.get("contentType", "")
            item = appcallback_pb2.TopicEventBulkRequestEntry(
                entry_id=entry.get("entryId", ""), content_type=content_type, metadata=entry.get("metadata") or {}
            )
            if isinstance(event, dict):
                single = topic_event(orjson.dumps(event), path)
                item.cloud_event.CopyFrom(
                    appcallback_pb2.TopicEventCERequest(
                        id=single.id,
                        source=single.source,
                        type=single.type,
                        spec_version=single.spec_version,
                        data_content_type=single.data_content_type,
                        data=single.data,
                        extensions=single.extensions,
                    )
                )
            else:
                item.bytes = event.encode() if isinstance(event, str) else orjson.dumps(event)
            entries.append(item)
        request = appcallback_pb2.TopicEventBulkRequest(
            id=envelope.get("id", ""),
            entries=entries,
            metadata=envelope.get("metadata") or {},
            topic=topic,
            pubsub_name=pubsub,
            type=envelope.get("type", ""),
            path=self._app_path(pubsub, topic, path),
        )
        stable = appcallback_pb2_grpc.AppCallbackStub(self.channel)  # type: ignore[no-untyped-call]
        alpha = appcallback_pb2_grpc.AppCallbackAlphaStub(self.channel)  # type: ignore[no-untyped-call]
        try:
            try:
                answer = await self._call(stable.OnBulkTopicEvent, request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                answer = await self._call(alpha.OnBulkTopicEventAlpha1, request)
        except grpc.aio.AioRpcError as exc:
            log.warning("OnBulkTopicEvent failed: %s %s", exc.code().name, exc.details())
            return _answer(500)
        statuses = [
            {"entryId": status.entry_id, "status": _STATUS_NAMES.get(status.status, "RETRY")}
            for status in answer.statuses
        ]
        return _json(200, {"statuses": statuses})

    # -- invocations -----------------------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes],
        length: int | None,
    ) -> Response:
        """An invocation, over gRPC (the HTTP channel's ``send`` speaks HTTP): the app's token among the
        metadata, ``--app-max-concurrency`` and the metrics as for an HTTP app."""
        if self._token:
            headers = headers + self._token
        started, status, received = perf_counter(), 500, 0
        try:
            if self._slots is None:
                answer = await self._invoke(method, target, headers, body)
            else:
                async with self._slots:
                    answer = await self._invoke(method, target, headers, body)
            status, received = answer.status_code, len(answer.content)
            return answer
        finally:
            if self.metrics is not None:
                sent = len(body) if isinstance(body, bytes) else (length or 0)
                self.metrics.app_invocation(method, target, status, sent, received, perf_counter() - started)

    async def _invoke(
        self, verb: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes | AsyncIterable[bytes]
    ) -> Response:
        data = body if isinstance(body, bytes) else b"".join([chunk async for chunk in body])
        proxied = next((value for name, value in headers if name.lower() == _PROXY_METHOD), None)
        if proxied is not None:
            if any(name.lower() == _STREAM for name, _ in headers):
                return self._ticket(proxied.decode("latin-1"), headers)
            return await self._proxied(proxied.decode("latin-1"), data, headers)
        path, _, query = target.decode("latin-1").partition("?")
        content_type = ""
        extension: common_pb2.HTTPExtension | None = common_pb2.HTTPExtension(
            verb=_VERBS.get(verb.upper(), _VERBS["POST"]), querystring=query
        )
        metadata: list[tuple[str, str]] = []
        for name, value in headers:
            key = name.decode("latin-1").lower()
            if key == "content-type":
                content_type = value.decode("latin-1")
            elif key == "layotto-http-extension":  # the caller sent no verb: the request as it came
                extension = common_pb2.HTTPExtension(querystring=query) if value == b"none" else None
            elif key not in _NOT_METADATA and not key.startswith(("grpc-", ":")):
                metadata.append((key, value.decode("latin-1")))
        request = common_pb2.InvokeRequest(
            method=unquote(path.lstrip("/")), data=any_pb2.Any(value=data), content_type=content_type
        )
        if extension is not None:
            request.http_extension.CopyFrom(extension)
        stub = appcallback_pb2_grpc.AppCallbackStub(self.channel)  # type: ignore[no-untyped-call]
        call = stub.OnInvoke(request, metadata=metadata)
        try:
            answer = await call
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE and not await _reached(call):
                raise ConnectError(exc.details() or "connection refused") from None
            status = status_pb2.Status(code=exc.code().value[0], message=exc.details() or "")
            return _answer(_HTTP_OF_GRPC.get(exc.code(), 500), json_format.MessageToJson(status).encode(), list(_JSON))
        response_headers = [(b"content-type", answer.content_type.encode("latin-1"))] if answer.content_type else []
        return _answer(200, answer.data.value, response_headers)

    def _ticket(self, method: str, headers: list[tuple[bytes, bytes]]) -> Response:
        """A hop asking to open a proxied stream to ``method`` (``app.grpc.hop_tickets``): a ticket bound to
        the identity the hop brought, and where to present it."""
        desk = self.tickets
        if desk is None or not desk.address:
            status = status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message="no gRPC port to stream to")
            return _answer(503, json_format.MessageToJson(status).encode(), list(_JSON))
        kept = [(name.lower(), value) for name, value in headers if name.lower() in _KEPT]
        ticket = desk.issue(method, kept)
        answer = [(TICKET_HEADER.encode(), ticket.encode()), (ADDRESS_HEADER.encode(), desk.address.encode())]
        return _answer(200, b"", answer)

    async def _proxied(self, method: str, data: bytes, headers: list[tuple[bytes, bytes]]) -> Response:
        """A unary call proxied by ``dapr-app-id`` across a mutual-TLS hop (``app.grpc.proxy``): the request's
        bytes to ``method`` as they are; the app's status in ``grpc-status``/``grpc-message`` of a 200 answer.
        A second answer message means a streamed method, which this path cannot carry: UNIMPLEMENTED."""
        metadata = [
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in headers
            if name.lower() not in (_PROXY_METHOD, b"content-type", b"content-length", b"host")
        ]
        stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = self.channel.unary_stream(method)
        call = stream(data, metadata=metadata + self._metadata())  # the request and its end in one go
        content: bytes | object = grpc.aio.EOF
        try:
            content = await call.read()
            if content is not grpc.aio.EOF and await call.read() is not grpc.aio.EOF:
                call.cancel()
                message = quote("only unary calls are proxied to other apps over a mutual-TLS hop")
                return _answer(200, b"", [(b"grpc-status", b"12"), (b"grpc-message", message.encode())])
            code = await call.code()
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE and not await _reached(call):
                raise ConnectError(exc.details() or "connection refused") from None
            code = exc.code()
        if code is not grpc.StatusCode.OK or not isinstance(content, bytes):
            status = [
                (b"grpc-status", str(code.value[0]).encode()),
                (b"grpc-message", quote(await call.details() or "").encode()),
            ]
            return _answer(200, b"", status)
        return _answer(200, content, [(b"grpc-status", b"0"), (b"content-type", b"application/grpc")])


async def _reached(call: Any) -> bool:
    """Whether the app answered at all (headers came back): an UNAVAILABLE it sent itself is its answer."""
    try:
        return bool(await call.initial_metadata())
    except grpc.aio.AioRpcError:
        return False
