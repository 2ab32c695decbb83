"""The caller's request body, streamed to the target, and whether it can be sent again (for retries).

A body is streamed chunk by chunk as it arrives, never held whole — unless it is small (``Content-Length``
up to ``SMALL_BODY``: it has arrived with the head anyway, and goes out with the head in one write), or a
retry policy may need to send it again and it is small enough (up to ``REPLAY_LIMIT``); then it is read first. A
streamed body can be sent again only while none of it has been read (e.g. the connection was refused).
Chunked bodies (no ``Content-Length``) are never retried once read, as in Dapr.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

__all__ = ("REPLAY_LIMIT", "SMALL_BODY", "RequestBody")

#: Bodies up to this size are buffered when a retry policy applies (Dapr's default max body size).
REPLAY_LIMIT = 4 << 20
#: Bodies up to this size are always read first.
SMALL_BODY = 64 << 10


class RequestBody:
    def __init__(self, chunks: AsyncIterator[bytes], length: int | None, chunked: bool) -> None:
        self._chunks = chunks
        self.length = length
        self.chunked = chunked
        self._data: bytes | None = b"" if length == 0 or (length is None and not chunked) else None
        self.touched = False

    @property
    def replayable(self) -> bool:
        return self._data is not None or not self.touched

    async def buffer(self, limit: int = REPLAY_LIMIT) -> None:
        """Read the whole body now when its announced length is at most ``limit``."""
        if self._data is not None or self.touched or self.length is None or self.length > limit:
            return
        self.touched = True
        self._data = b"".join([chunk async for chunk in self._chunks])

    def content(self) -> bytes | AsyncIterator[bytes]:
        """What to send for one attempt."""
        if self._data is not None:
            return self._data
        return self._stream()

    async def _stream(self) -> AsyncIterator[bytes]:
        self.touched = True
        async for chunk in self._chunks:
            if chunk:
                yield chunk
