"""``pubsub.kafka``'s publishing side: one idempotent librdkafka producer per component.

``enqueue`` hands a message to librdkafka and returns a future resolved by its delivery report, so the
event loop never blocks: a background thread calls ``producer.poll``, whose delivery callback settles the
future through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from building_blocks.errors import ComponentError
from building_blocks.pubsub.base import PublishRequest
from building_blocks.pubsub.kafka.errors import describe

__all__ = ("KEY_NAMES", "KafkaProducer")

log = logging.getLogger("building_blocks.pubsub.kafka")

_PRODUCER_POLL = 0.5  # seconds a producer poll blocks (it returns at once when a report arrives)
_FLUSH_TIMEOUT = 10.0

#: Request metadata naming the record key; they are not sent as headers.
KEY_NAMES = frozenset({"partitionKey", "__key", "key"})


class KafkaProducer:
    """The producer of component ``name`` and its poll thread, from ``open()`` to ``close()``."""

    def __init__(
        self, name: str, config: dict[str, Any], publish_timeout: float, exclude_headers: re.Pattern[str] | None
    ) -> None:
        self.name = name
        self._config = config
        self._publish_timeout = publish_timeout
        self._exclude_headers = exclude_headers
        self._producer: Producer | None = None
        self._poller: threading.Thread | None = None
        self._stop_polling = threading.Event()

    def open(self, extra: dict[str, Any]) -> None:
        """Creates the producer (``extra``: callbacks and logger) and starts polling it."""
        try:
            self._producer = Producer({**self._config, **extra})
        except (KafkaException, ValueError, TypeError) as exc:
            raise ComponentError(f"kafka: cannot create the producer: {describe(exc)}") from exc
        self._stop_polling.clear()
        self._poller = threading.Thread(target=self._poll, name=f"kafka-producer-{self.name}", daemon=True)
        self._poller.start()

    async def close(self) -> None:
        """Stops polling, then flushes what is still queued (up to 10 s)."""
        producer, self._producer = self._producer, None
        poller, self._poller = self._poller, None
        self._stop_polling.set()
        if poller is not None:
            await asyncio.to_thread(poller.join)
        if producer is not None:
            left = await asyncio.to_thread(producer.flush, _FLUSH_TIMEOUT)
            if left:
                log.warning("kafka %s: %d message(s) not delivered when the producer closed", self.name, left)

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise ComponentError(f"kafka {self.name}: component is not initialized or closed")
        return self._producer

    def _poll(self) -> None:
        while not self._stop_polling.is_set():
            producer = self._producer
            if producer is None:
                return
            producer.poll(_PRODUCER_POLL)

    async def enqueue(self, request: PublishRequest) -> asyncio.Future[None]:
        """Hands one message to librdkafka; the future resolves with its delivery report."""
        producer = self.producer
        loop = asyncio.get_running_loop()
        key: str | None = None
        headers: list[tuple[str, str | bytes | None]] = []
        for name, value in request.metadata.items():
            if name in KEY_NAMES:
                if key is None or name == "partitionKey":
                    key = value
            elif self._exclude_headers is None or not self._exclude_headers.search(name):
                headers.append((name, value.encode()))
        future: asyncio.Future[None] = loop.create_future()
        on_delivery = partial(_delivered, loop, future)
        deadline = loop.time() + self._publish_timeout
        while True:
            try:
                producer.produce(
                    request.topic,
                    value=request.data,
                    key=key.encode() if key is not None else None,
                    headers=headers or None,
                    on_delivery=on_delivery,
                )
                return future
            except BufferError:
                # librdkafka's queue is full: wait for deliveries to make room.
                if loop.time() > deadline:
                    raise ComponentError(f"kafka: cannot publish to {request.topic!r}: producer queue full") from None
                await asyncio.sleep(0.01)
            except KafkaException as exc:
                raise ComponentError(f"kafka: cannot publish to {request.topic!r}: {describe(exc)}") from exc


def _delivered(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], error: KafkaError | None, _: Any) -> None:
    """Delivery callback, on the producer's poll thread."""
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        loop.call_soon_threadsafe(_settle, future, error)


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
        return
    failure = ComponentError(f"kafka: delivery failed: {error.str()}")
    failure.__cause__ = KafkaException(error)
    future.set_exception(failure)
