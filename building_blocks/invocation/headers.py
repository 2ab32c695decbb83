"""Which headers cross an invocation, in both directions (Dapr's rules), and W3C trace context.

Hop-by-hop headers (and any named in ``Connection``) never cross; neither do ``Host``, ``Content-Length``
(recomputed), ``dapr-app-id``, ``dapr-api-token`` and the hop's secret. Headers keep their order and repeated
values. The identity headers (``dapr-caller-app-id``, ``dapr-caller-namespace``, ``dapr-callee-app-id``) a
client sends are dropped: the sidecar sets them itself (``identity``), from its own app id or from the
authenticated hop.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from operator import itemgetter
from random import getrandbits

__all__ = (
    "CALLEE",
    "CALLER_ID",
    "CALLER_NAMESPACE",
    "HOP_TOKEN",
    "Headers",
    "caller_of",
    "first",
    "forwardable",
    "identity",
    "response_headers",
    "trace_parent",
)

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",
        b"te",
        b"trailer",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)
CALLER_ID = b"dapr-caller-app-id"
CALLER_NAMESPACE = b"dapr-caller-namespace"
CALLEE = b"dapr-callee-app-id"
#: The hop's secret (checked by the internal listener): it authenticates one hop and goes no further.
HOP_TOKEN = b"layotto-internal-token"
#: The marker of the old hop on the public port; never honoured, never passed on.
_OLD_MARKER = b"layotto-internal-invoke"
_IDENTITY = frozenset({CALLER_ID, CALLER_NAMESPACE, CALLEE})
#: ``traceparent`` is set again by the invoker (the caller's when valid, else a new one).
_NEVER_FORWARDED = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"dapr-app-id",
    b"dapr-api-token",
    b"expect",
    b"traceparent",
    HOP_TOKEN,
    _OLD_MARKER,
}
_NOT_FORWARDED = _NEVER_FORWARDED | _IDENTITY
#: What a target's answer never carries back: framing, the sidecar's own ``Date``/``Server``, and the marks
#: of a sidecar's own answer to a hop (an app must not pass for its sidecar).
_NOT_RELAYED = HOP_BY_HOP | {b"content-length", b"date", b"server", b"layotto-sidecar-error", b"layotto-misrouted"}
_NAME = itemgetter(0)
_TRACE_PARENT = re.compile(rb"^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    return {token.strip().lower() for name, value in headers if name == b"connection" for token in value.split(b",")}


def forwardable(headers: Headers) -> Headers:
    """The caller's headers that go on to the target (names are lower-case in ASGI), identity excluded.

    Whether a ``Connection`` header names more to drop is looked up in C first (``map``), and the kept pairs are
    the caller's own: 1.8 µs -> 1.5 µs for a hop's 11 headers, 1.0 µs -> 0.7 µs for an app's 3."""
    if b"connection" in map(_NAME, headers):
        dropped = _NOT_FORWARDED | _connection_tokens(headers)
        return [header for header in headers if header[0] not in dropped]
    return [header for header in headers if header[0] not in _NOT_FORWARDED]


def identity(caller_namespace: bytes, caller: bytes, callee: bytes) -> Headers:
    """The identity headers, as the sidecar sets them."""
    return [(CALLER_NAMESPACE, caller_namespace or b"default"), (CALLER_ID, caller), (CALLEE, callee)]


def first(headers: Headers, name: bytes) -> bytes:
    """The first value of header ``name`` (lower-case), or ``b""``. A loop, not ``next`` over a generator:
    0.9 µs -> 0.3 µs for the caller id among a hop's 11 headers."""
    for header, value in headers:
        if header == name:
            return value
    return b""


def caller_of(headers: Headers) -> tuple[bytes, bytes]:
    """The caller's namespace and app id a hop carries (``b""`` for one not there): both in one pass."""
    namespace: bytes | None = None
    caller: bytes | None = None
    for name, value in headers:
        if name == CALLER_ID:
            if caller is None:
                caller = value
                if namespace is not None:
                    break
        elif name == CALLER_NAMESPACE and namespace is None:
            namespace = value
            if caller is not None:
                break
    return namespace or b"", caller or b""


def response_headers(headers: Iterable[tuple[bytes, bytes]], lowered: bool = False) -> Headers:
    """The target's response headers that go back to the caller (``lowered``: their names are lower-case
    already, as the sidecar's HTTP client gives them).

    ``Content-Length`` is recomputed; ``Date`` and ``Server`` are the sidecar's own (its HTTP server always
    sets them, so relaying the target's would repeat them).
    """
    items = headers if lowered and isinstance(headers, list) else [(name.lower(), value) for name, value in headers]
    if b"connection" in map(_NAME, items):  # as in ``forwardable``: 1.1 µs -> 0.9 µs for an answer's 4 headers
        dropped = _NOT_RELAYED | _connection_tokens(items)
        return [header for header in items if header[0] not in dropped]
    return [header for header in items if header[0] not in _NOT_RELAYED]


def trace_parent(headers: Headers) -> bytes:
    """The caller's ``traceparent`` when valid, else a new sampled trace."""
    for name, value in headers:
        if name == b"traceparent" and _TRACE_PARENT.match(value.strip()):
            return value.strip()
    # Ids need to be unique, not secret (OpenTelemetry's generator is a seeded PRNG too): ``getrandbits`` spares
    # the two ``getrandom`` system calls ``os.urandom`` makes per call. Never all zeros (invalid).
    return b"00-%032x-%016x-01" % (getrandbits(128) or 1, getrandbits(64) or 1)
