"""Pub/sub building block: the contract; components live in their own modules."""

from building_blocks.pubsub.base import (
    Feature,
    Handler,
    Message,
    PublishRequest,
    PubSub,
    SubscribeRequest,
    Subscription,
)

__all__ = ("Feature", "Handler", "Message", "PubSub", "PublishRequest", "SubscribeRequest", "Subscription")
