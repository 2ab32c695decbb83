"""Metadata and shutdown: ``GetMetadata``, ``SetMetadata``, ``Shutdown``.

The JS SDK's gRPC client probes the sidecar with ``GetMetadata`` before its first call.
"""

from __future__ import annotations

from dapr.proto.runtime.v1 import dapr_pb2, metadata_pb2
from google.protobuf import empty_pb2

from app import __version__
from app.grpc.dapr.base import Context, Part

__all__ = ("MetadataMethods",)

_KINDS = metadata_pb2.PubsubSubscriptionType


def _kind(kind: str) -> metadata_pb2.PubsubSubscriptionType.ValueType:
    return _KINDS.Value(kind.upper()) if kind.upper() in _KINDS.keys() else _KINDS.UNKNOWN  # noqa: SIM118


class MetadataMethods(Part):
    async def GetMetadata(
        self, request: metadata_pb2.GetMetadataRequest, context: Context
    ) -> metadata_pb2.GetMetadataResponse:
        runtime = self.runtime
        settings = runtime.settings
        components = [
            metadata_pb2.RegisteredComponents(
                name=loaded.spec.name,
                type=loaded.spec.type,
                version=loaded.spec.version,
                capabilities=loaded.capabilities or [],
            )
            for loaded in runtime.components
        ]
        subscriptions = [
            metadata_pb2.PubsubSubscription(
                pubsub_name=spec.pubsub,
                topic=spec.topic,
                metadata=dict(spec.metadata),
                rules=metadata_pb2.PubsubSubscriptionRules(
                    rules=[metadata_pb2.PubsubSubscriptionRule(match=rule.match, path=rule.path) for rule in spec.rules]
                ),
                dead_letter_topic=spec.dead_letter_topic,
                type=_kind(spec.kind),
            )
            for spec in runtime.pubsub.subscriptions
        ]
        endpoints = runtime.invocation.endpoints if runtime.invocation is not None else ()
        return metadata_pb2.GetMetadataResponse(
            id=settings.app_id,
            runtime_version=__version__,
            registered_components=components,
            extended_metadata={**runtime.extended, "daprRuntimeVersion": __version__},
            subscriptions=subscriptions,
            http_endpoints=[metadata_pb2.MetadataHTTPEndpoint(name=name) for name in endpoints],
            app_connection_properties=metadata_pb2.AppConnectionProperties(
                port=settings.app_port or 0,
                protocol=settings.app_protocol,
                channel_address=settings.app_channel_address,
            ),
        )

    async def SetMetadata(self, request: metadata_pb2.SetMetadataRequest, context: Context) -> empty_pb2.Empty:
        if request.key:  # daprd ignores an empty key
            self.runtime.extended[request.key] = request.value
        return empty_pb2.Empty()

    async def Shutdown(self, request: dapr_pb2.ShutdownRequest, context: Context) -> empty_pb2.Empty:
        force = any(
            key == "dapr-force-shutdown" and str(value).lower() == "true"
            for key, value in context.invocation_metadata() or ()
        )
        self.runtime.request_shutdown(force=force)
        return empty_pb2.Empty()
