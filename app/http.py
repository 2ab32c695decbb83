"""Small HTTP helpers shared by the routers: request metadata, JSON bodies, responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

from building_blocks import jsoncodec
from building_blocks.empty import NO_METADATA

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = (
    "json_response",
    "metadata_from_query",
    "query_metadata",
    "raw_response",
    "runtime_of",
)


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.scope["app"].runtime  # the front door (``app.middleware.FrontDoor``)
    return runtime


def query_metadata(request: Request) -> Mapping[str, str]:
    """``metadata.<name>`` query parameters, prefix removed; the first value of a name wins."""
    return metadata_from_query(request.scope["query_string"])


def metadata_from_query(raw: bytes) -> Mapping[str, str]:
    """``query_metadata`` of a raw query string."""
    if b"metadata." not in raw:
        return NO_METADATA
    metadata: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if name.startswith("metadata.") and len(name) > 9:
            metadata.setdefault(name[9:], value)
    return metadata


def raw_response(status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> Response:
    """A response with its headers given as they go on the wire (lower-case names, framing included): no
    header parsing or copying, for the hot routes."""
    response = Response.__new__(Response)
    response.status_code = status
    response.body = body
    response.background = None
    response.raw_headers = headers
    return response


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


def raw_json(value: bytes) -> Any:
    """A stored value to embed in a JSON response: as-is when it is JSON (however deep), else as a JSON string."""
    if jsoncodec.is_json(value):
        return orjson.Fragment(value)
    return value.decode(errors="replace")
