"""Secrets: ``GetSecret``, ``GetBulkSecret``."""

from __future__ import annotations

from dapr.proto.runtime.v1 import secret_pb2

from app.grpc.dapr.base import Context, Part

__all__ = ("SecretMethods",)


class SecretMethods(Part):
    async def GetSecret(self, request: secret_pb2.GetSecretRequest, context: Context) -> secret_pb2.GetSecretResponse:
        secret = await self.runtime.secrets.get(request.store_name, request.key, dict(request.metadata))
        return secret_pb2.GetSecretResponse(data=secret)

    async def GetBulkSecret(
        self, request: secret_pb2.GetBulkSecretRequest, context: Context
    ) -> secret_pb2.GetBulkSecretResponse:
        secrets = await self.runtime.secrets.bulk_get(request.store_name, dict(request.metadata))
        data = {name: secret_pb2.SecretResponse(secrets=values) for name, values in secrets.items()}
        return secret_pb2.GetBulkSecretResponse(data=data)
