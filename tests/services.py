"""The real services the tests use, found on loopback.

Outside CI a missing service skips the tests that need it, with the reason; in CI
(``LAYOTTO_REQUIRE_SERVICES=1``, set by ``.ci/run``) it fails them.
"""

from __future__ import annotations

import os
import socket

import pytest

REDIS_HOST = os.environ.get("LAYOTTO_TEST_REDIS", "127.0.0.1:6379")
POSTGRES_DSN = os.environ.get("LAYOTTO_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres database=test")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("LAYOTTO_REQUIRE_SERVICES"):
        pytest.fail(f"{message} (required in CI)")
    pytest.skip(message)


def require_redis() -> str:
    host, _, port = REDIS_HOST.partition(":")
    require_service("Redis", host, int(port or 6379))
    return REDIS_HOST


def require_postgres() -> str:
    fields = dict(part.split("=", 1) for part in POSTGRES_DSN.split())
    require_service("PostgreSQL", fields.get("host", "127.0.0.1"), int(fields.get("port", 5432)))
    return POSTGRES_DSN
