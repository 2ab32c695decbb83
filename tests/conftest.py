"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from tests.kafka_broker import start_kafka_broker

# Sidecars default to files under ~/.layotto (state, name resolution...): tests get a home of their own, so
# they never touch the developer's data, and every sidecar process they start inherits it.
os.environ["HOME"] = tempfile.mkdtemp(prefix="layotto-tests-home-")


@pytest.fixture(scope="session")
def kafka_brokers() -> Iterator[str]:
    """The bootstrap address of a Kafka-protocol broker (a private Tansu) for this test session."""
    broker = start_kafka_broker()
    yield broker.bootstrap
    broker.stop()
