"""What a librdkafka exception says, for ``ComponentError`` messages and logs."""

from __future__ import annotations

from confluent_kafka import KafkaError

__all__ = ("describe", "kafka_error")


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The ``KafkaError`` a ``KafkaException`` carries, if any."""
    cause = exc.args[0] if exc.args else None
    return cause if isinstance(cause, KafkaError) else None


def describe(exc: BaseException) -> str:
    error = kafka_error(exc)
    return error.str() if error is not None else (str(exc) or type(exc).__name__)
