"""What Dapr's Redis components share: connection settings read from metadata, and error translation.

Metadata: ``redisHost`` (required, ``host:port``), ``redisPort`` (6379, when the host has no port),
``redisUsername``, ``redisPassword``, ``redisDB`` (0), ``enableTLS`` (false),
``redisMaxRetries`` / ``maxRetries`` (3), ``dialTimeout`` (5s), ``readTimeout`` (3s),
``poolSize`` (10 per CPU), ``poolTimeout`` (readTimeout + 1s).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis.asyncio import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from building_blocks.component import Metadata
from building_blocks.errors import ComponentError

__all__ = ("pool_options", "split_address", "translated")


def pool_options(meta: Metadata) -> dict[str, Any]:
    """Keyword arguments of ``redis.asyncio.BlockingConnectionPool`` for the connection metadata."""
    host, port = split_address(meta.text("redisHost", required=True), meta.integer("redisPort", 6379))
    read_timeout = meta.duration("readTimeout", 3.0)
    retries = meta.integer("redisMaxRetries", meta.integer("maxRetries", 3))
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "db": meta.integer("redisDB", 0),
        "username": meta.text("redisUsername") or None,
        "password": meta.text("redisPassword") or None,
        "socket_connect_timeout": meta.duration("dialTimeout", 5.0),
        "socket_timeout": read_timeout if read_timeout > 0 else None,
        "retry": Retry(ExponentialWithJitterBackoff(cap=2.0, base=0.008), max(retries, 0)),
        "max_connections": meta.integer("poolSize", 10 * (os.cpu_count() or 1)),
        "timeout": meta.duration("poolTimeout", max(read_timeout, 0) + 1.0),
    }
    if meta.boolean("enableTLS", False):
        options["connection_class"] = SSLConnection
    return options


def split_address(address: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, or a bare host using ``default_port``."""
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and (":" not in host or host.startswith("[")):
        return host.strip("[]"), int(port)
    return address.strip("[]"), default_port


@contextmanager
def translated() -> Iterator[None]:
    """Redis errors become ``ComponentError``."""
    try:
        yield
    except RedisError as exc:
        raise ComponentError(f"redis: {exc}") from exc
