"""Dapr's ``dapr.proto.runtime.v1.Dapr`` service, one module per block (``service.py`` composes them)."""
