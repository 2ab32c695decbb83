"""uvicorn's httptools protocol with a bound on request heads, as daprd's ``--read-buffer-size``.

uvicorn has no limit on the request line and headers with httptools, and httptools concatenates a header
value piece by piece until it is complete: a 48 MiB header took seconds of the event loop before anything
could refuse it. Here the bytes of a head that is still incomplete are counted after each read; past the
limit the connection gets Go's ``431 Request Header Fields Too Large`` and is closed at once, so at most one
socket read (uvloop reads up to 256 KiB) beyond the limit is ever buffered.

The limit is daprd's: ``--read-buffer-size`` (4 KiB by default) plus the 4 KiB of slack Go's ``net/http``
allows on top of ``MaxHeaderBytes``.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ("GO_HEADER_SLACK", "bounded_protocol")

GO_HEADER_SLACK = 4096
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 35\r\n\r\n"
    b"431 Request Header Fields Too Large"
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """Counts the bytes of the request head being read; ``head_limit`` is set by ``bounded_protocol``."""

    head_limit = 4096 + GO_HEADER_SLACK
    _reading_head = True
    _head_bytes = 0
    _had_body = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._reading_head or self.transport.is_closing():
            return
        # This read did not complete the head, so it is (almost all) head bytes: only a pipelined
        # request's body tail in the same read is counted with it, which can only refuse earlier.
        self._head_bytes += len(data)
        if self._head_bytes > self.head_limit:
            self.logger.info("request head over %d bytes refused (431)", self.head_limit)
            self.transport.write(_TOO_LARGE)
            self.transport.close()
            self._reading_head = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._had_body = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # A read that ends a body is body, not head: counting it refused large bodies with 431.
        self._reading_head = not self._had_body
        self._had_body = False


def bounded_protocol(read_buffer_size: int) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``Config(http=...)``, refusing heads over ``read_buffer_size``."""
    limit = read_buffer_size + GO_HEADER_SLACK
    return type("BoundedHeadProtocol", (BoundedHeadProtocol,), {"head_limit": limit})
