"""Configuration building block: the contract; components live in their own modules."""

from building_blocks.configuration.base import (
    ConfigurationItem,
    ConfigurationStore,
    ConfigurationUpdate,
    DeleteRequest,
    GetRequest,
    SaveItem,
    SaveRequest,
    SubscribeRequest,
    Subscription,
    UpdateHandler,
)

__all__ = (
    "ConfigurationItem",
    "ConfigurationStore",
    "ConfigurationUpdate",
    "DeleteRequest",
    "GetRequest",
    "SaveItem",
    "SaveRequest",
    "SubscribeRequest",
    "Subscription",
    "UpdateHandler",
)
