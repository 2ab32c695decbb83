"""Distributed lock: ``TryLockAlpha1``, ``UnlockAlpha1`` (Dapr has no stable names for them)."""

from __future__ import annotations

from dapr.proto.runtime.v1 import lock_pb2

from app.grpc.dapr.base import Context, Part
from building_blocks.lock.base import TryLockRequest, UnlockRequest

__all__ = ("LockMethods",)


class LockMethods(Part):
    async def TryLockAlpha1(self, request: lock_pb2.TryLockRequest, context: Context) -> lock_pb2.TryLockResponse:
        typed = TryLockRequest(request.resource_id, request.lock_owner, request.expiry_in_seconds)
        return lock_pb2.TryLockResponse(success=await self.runtime.lock.try_lock(request.store_name, typed))

    async def UnlockAlpha1(self, request: lock_pb2.UnlockRequest, context: Context) -> lock_pb2.UnlockResponse:
        typed = UnlockRequest(request.resource_id, request.lock_owner)
        status = await self.runtime.lock.unlock(request.store_name, typed)
        return lock_pb2.UnlockResponse(status=int(status))  # type: ignore[arg-type]
