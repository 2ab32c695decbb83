"""What every part of the Dapr servicer shares: the runtime, and the context type."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from app.runtime import Runtime

    Context = grpc.aio.ServicerContext[Any, Any]
else:  # grpcio's classes are not generic at run time
    Context = grpc.aio.ServicerContext

__all__ = ("Context", "Part")


class Part:
    """A block's methods of the servicer; the runtime gives it the blocks the HTTP routes call."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
