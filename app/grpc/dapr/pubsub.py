"""Pub/sub publishing: ``PublishEvent``, ``BulkPublishEvent`` and ``BulkPublishEventAlpha1`` (the JS SDK calls
the Alpha1 name, the others try the stable one first).

Over gRPC daprd answers a bulk publish whose entries partly failed with OK and the failed entries, not with
an error status. W3C trace context comes from the call's metadata, as from HTTP headers.
"""

from __future__ import annotations

from dapr.proto.runtime.v1 import pubsub_pb2 as pb
from google.protobuf import empty_pb2

from app.grpc.dapr.base import Context, Part
from building_blocks.errors import BulkPublishFailed, InvalidRequest
from building_blocks.pubsub.base import BulkPublishEntry

__all__ = ("PubSubMethods", "trace_of")

_TRACE = ("traceparent", "tracestate")


def trace_of(context: Context) -> dict[str, str]:
    return {key: str(value) for key, value in context.invocation_metadata() or () if key in _TRACE}


def _names(pubsub: str, topic: str) -> None:
    if not pubsub:
        raise InvalidRequest("pubsub name is empty")
    if not topic:
        raise InvalidRequest(f"topic is empty in pubsub {pubsub}")


class PubSubMethods(Part):
    async def PublishEvent(self, request: pb.PublishEventRequest, context: Context) -> empty_pb2.Empty:
        _names(request.pubsub_name, request.topic)
        await self.runtime.pubsub.publish(
            request.pubsub_name,
            request.topic,
            request.data,
            request.data_content_type,
            dict(request.metadata) if request.metadata else {},
            trace_of(context),
        )
        return empty_pb2.Empty()

    async def BulkPublishEvent(self, request: pb.BulkPublishRequest, context: Context) -> pb.BulkPublishResponse:
        _names(request.pubsub_name, request.topic)
        pubsub = self.runtime.pubsub
        pubsub.check_publishable(request.pubsub_name, request.topic)
        entries = [
            BulkPublishEntry(entry.entry_id, entry.event, entry.content_type, dict(entry.metadata))
            for entry in request.entries
        ]
        try:
            await pubsub.bulk_publish(
                request.pubsub_name, request.topic, entries, dict(request.metadata), trace_of(context)
            )
        except BulkPublishFailed as failed:
            return pb.BulkPublishResponse(
                failedEntries=[
                    pb.BulkPublishResponseFailedEntry(entry_id=entry_id, error=error)
                    for entry_id, error in failed.failures
                ]
            )
        return pb.BulkPublishResponse()

    BulkPublishEventAlpha1 = BulkPublishEvent
