"""Configuration: ``GetConfiguration``, ``SubscribeConfiguration`` (a server stream) and
``UnsubscribeConfiguration``, each under its stable and its Alpha1 name (the Python SDK calls the Alpha1 ones).

A subscription's stream first carries only its id, then one message per change, as daprd's; it ends when
the subscription is unsubscribed (through either front) and the subscription ends with the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import configuration_pb2 as pb

from app.grpc.dapr.base import Context, Part
from building_blocks.configuration.base import ConfigurationItem, ConfigurationUpdate, GetRequest, SubscribeRequest
from building_blocks.errors import OperationFailed

__all__ = ("ConfigurationMethods", "items_pb")


def items_pb(items: Mapping[str, ConfigurationItem | None]) -> dict[str, common_pb2.ConfigurationItem]:
    """Items on the wire; a deleted key is an empty item."""
    return {
        key: common_pb2.ConfigurationItem(value=item.value, version=item.version, metadata=dict(item.metadata))
        if item is not None
        else common_pb2.ConfigurationItem()
        for key, item in items.items()
    }


class ConfigurationMethods(Part):
    async def GetConfiguration(
        self, request: pb.GetConfigurationRequest, context: Context
    ) -> pb.GetConfigurationResponse:
        typed = GetRequest(tuple(request.keys), dict(request.metadata))
        items = await self.runtime.configuration.get(request.store_name, typed)
        return pb.GetConfigurationResponse(items=items_pb(items))

    GetConfigurationAlpha1 = GetConfiguration

    async def SubscribeConfiguration(
        self, request: pb.SubscribeConfigurationRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeConfigurationResponse]:
        updates: asyncio.Queue[ConfigurationUpdate | None] = asyncio.Queue()

        async def deliver(store: str, update: ConfigurationUpdate) -> None:
            updates.put_nowait(update)

        block = self.runtime.configuration
        typed = SubscribeRequest(tuple(request.keys), dict(request.metadata))
        subscription_id = await block.subscribe(
            request.store_name, typed, deliver, on_end=lambda: updates.put_nowait(None)
        )
        ended = False
        try:
            yield pb.SubscribeConfigurationResponse(id=subscription_id)
            while (update := await updates.get()) is not None:
                yield pb.SubscribeConfigurationResponse(id=update.id, items=items_pb(update.items))
            ended = True
        finally:
            if not ended:  # the client went away: the subscription goes with its stream
                with contextlib.suppress(OperationFailed):  # it ended meanwhile
                    await block.unsubscribe(request.store_name, subscription_id)

    SubscribeConfigurationAlpha1 = SubscribeConfiguration

    async def UnsubscribeConfiguration(
        self, request: pb.UnsubscribeConfigurationRequest, context: Context
    ) -> pb.UnsubscribeConfigurationResponse:
        """An unknown id is not an error over gRPC: ``ok=false`` with daprd's message."""
        try:
            await self.runtime.configuration.unsubscribe(request.store_name, request.id)
        except OperationFailed as exc:
            message = f"failed to unsubscribe to configuration request {request.id}: {exc.cause}"
            return pb.UnsubscribeConfigurationResponse(ok=False, message=message)
        return pb.UnsubscribeConfigurationResponse(ok=True)

    UnsubscribeConfigurationAlpha1 = UnsubscribeConfiguration
