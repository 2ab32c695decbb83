"""``pubsub.kafka``'s subscribing side: a consumer per subscription, polled on a thread of its own, and one
worker task per assigned partition that hands messages to the handler in order and records what may be
committed (see the package's docstring for the guarantees).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Message as KafkaMessage

from building_blocks.errors import ComponentError
from building_blocks.pubsub.base import Handler, Message, Subscription
from building_blocks.pubsub.kafka.errors import describe

if TYPE_CHECKING:
    from building_blocks.pubsub.kafka.component import KafkaPubSub

__all__ = ("KafkaSubscription",)

log = logging.getLogger("building_blocks.pubsub.kafka")

_POLL_INTERVAL = 0.2  # seconds a consumer poll blocks: bounds commit and close latency, ~5 wake-ups/s idle
_BACKOFF_MAX = 5.0  # seconds between two calls of a failing handler, at most
_ERROR_LOG_INTERVAL = 60.0  # seconds between two logs of the same consumer error code


def _to_message(record: KafkaMessage, escape: bool) -> Message:
    topic = record.topic() or ""
    partition = record.partition()
    offset = record.offset()
    metadata: dict[str, str] = {}
    raw_headers = record.headers() or []
    items: Iterable[tuple[str, str | bytes | None]] = (
        raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    )
    for name, raw in items:
        value = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
        metadata[name] = quote_plus(value) if escape else value
    key = record.key()
    if key is not None:
        text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        metadata["__key"] = text
        metadata["partitionKey"] = text
    metadata["__topic"] = topic
    metadata["__partition"] = str(partition)
    metadata["__offset"] = str(offset)
    kind, timestamp = record.timestamp()
    if kind != TIMESTAMP_NOT_AVAILABLE:
        metadata["__timestamp"] = str(timestamp)
    payload = record.value()
    # A tombstone (null value) is delivered as JSON null, as Dapr does.
    data = b"null" if payload is None else payload
    return Message(topic=topic, data=data, metadata=metadata, id=f"{topic}/{partition}/{offset}")


class _Partition:
    """One assigned partition of a subscription.

    The poll thread owns ``dispatched``, ``paused`` and ``committed``; the event loop owns the rest and
    publishes its progress in ``finished`` (messages done or dropped) and ``done`` (the next offset to
    commit: every earlier message of the partition was handled).
    """

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.stopping = False
        # poll thread
        self.dispatched = 0
        self.paused = False
        self.committed: int | None = None
        # event loop
        self.queue: deque[tuple[int, Message]] = deque()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.running: dict[int, asyncio.Task[None]] = {}
        self.busy: set[int] = set()  # offsets whose handler is running (not waiting to retry)
        self.order: deque[int] = deque()  # offsets started and not yet committable, in order
        self.succeeded: set[int] = set()
        self.finished = 0
        self.done: int | None = None

    def position(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


class KafkaSubscription(Subscription):
    """A consumer, its poll thread, and one worker task per assigned partition."""

    def __init__(self, owner: KafkaPubSub, topic: str, group: str, handler: Handler, config: dict[str, Any]) -> None:
        self.owner = owner
        self.topic = topic
        self.group = group
        self._handler = handler
        self._config = config
        self._loop = asyncio.get_running_loop()
        self._partitions: dict[int, _Partition] = {}  # poll thread's view of the assignment
        self._stopping = threading.Event()
        self._finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._assigned = asyncio.Event()
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._error_logged: dict[int, float] = {}
        self._high = owner.buffer_size
        self._low = max(owner.buffer_size // 2, 0)

    # --- public ------------------------------------------------------------------------------------

    @property
    def assignment(self) -> list[int]:
        """The partitions this subscription owns now."""
        return sorted(self._partitions)

    async def wait_assigned(self, timeout: float) -> bool:
        """True once the group gave this consumer its first assignment (possibly empty)."""
        try:
            await asyncio.wait_for(self._assigned.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        try:
            consumer = Consumer({**self._config, "on_commit": self._committed})
            consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        except (KafkaException, ValueError, TypeError) as exc:
            raise ComponentError(f"kafka: cannot subscribe to {self.topic!r}: {describe(exc)}") from exc
        self._consumer = consumer
        self._thread = threading.Thread(
            target=self._run, name=f"kafka-consumer-{self.owner.name}-{self.topic}", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._stopping.set()
            if self._thread is None:
                self._finished.set_result(None)
        await asyncio.shield(asyncio.wrap_future(self._finished))
        self.owner._forget(self)

    # --- poll thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self._stopping.is_set():
                try:
                    self._commit_progress(consumer)
                    self._apply_backpressure(consumer)
                    # poll() returns as soon as one message is there (consume() would wait for a full
                    # batch or the timeout); what else is already fetched is taken without waiting.
                    first = consumer.poll(_POLL_INTERVAL)
                    if first is not None:
                        self._dispatch([first, *consumer.consume(num_messages=self._high, timeout=0)])
                except KafkaException as exc:
                    log.warning("kafka subscription %s/%s: %s", self.topic, self.group, describe(exc))
                    self._stopping.wait(1.0)
                except Exception:
                    log.exception("kafka subscription %s/%s: poll loop failed", self.topic, self.group)
                    self._stopping.wait(1.0)
        finally:
            try:
                self._shutdown(consumer)
            finally:
                self._finished.set_result(None)

    def _shutdown(self, consumer: Consumer) -> None:
        parts = list(self._partitions.values())
        self._partitions.clear()
        self._stop_parts(parts, self.owner.drain_timeout)
        self._commit_final(consumer, parts)
        try:
            consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.info("kafka subscription %s/%s: closing the consumer: %s", self.topic, self.group, describe(exc))

    def _dispatch(self, records: list[KafkaMessage]) -> None:
        deliveries: list[tuple[_Partition, int, Message]] = []
        for record in records:
            error = record.error()
            if error is not None:
                self._log_error(error)
                continue
            part = self._partitions.get(record.partition() or 0)
            offset = record.offset()
            if part is None or part.stopping or offset is None:
                continue
            part.dispatched += 1
            deliveries.append((part, offset, _to_message(record, self.owner.escape_headers)))
        if deliveries:
            self._call_soon(self._feed, deliveries)

    def _commit_progress(self, consumer: Consumer) -> None:
        offsets: list[TopicPartition] = []
        for part in self._partitions.values():
            done = part.done
            if done is not None and done != part.committed:
                offsets.append(TopicPartition(part.topic, part.partition, done))
                part.committed = done
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=True)

    def _commit_final(self, consumer: Consumer, parts: list[_Partition]) -> None:
        """Synchronously commits the progress of partitions about to be given up (still owned now)."""
        offsets = [TopicPartition(p.topic, p.partition, p.done) for p in parts if p.done is not None]
        if not offsets:
            return
        try:
            results = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("kafka subscription %s/%s: final commit failed: %s", self.topic, self.group, describe(exc))
            return
        for result in results or []:
            if result.error is not None:
                log.warning(
                    "kafka subscription %s/%s: commit of partition %d failed: %s",
                    self.topic,
                    self.group,
                    result.partition,
                    result.error.str(),
                )

    def _committed(self, error: KafkaError | None, offsets: list[TopicPartition]) -> None:
        """Asynchronous commit result (on the poll thread): a failed commit is retried next round."""
        if error is None and all(tp.error is None for tp in offsets):
            return
        if error is not None and error.code() == KafkaError._NO_OFFSET:
            return
        log.warning(
            "kafka subscription %s/%s: commit failed: %s",
            self.topic,
            self.group,
            error.str() if error is not None else "; ".join(str(tp.error) for tp in offsets if tp.error),
        )
        for tp in offsets:
            part = self._partitions.get(tp.partition)
            if part is not None and part.committed == tp.offset:
                part.committed = None

    def _apply_backpressure(self, consumer: Consumer) -> None:
        pause: list[_Partition] = []
        resume: list[_Partition] = []
        for part in self._partitions.values():
            outstanding = part.dispatched - part.finished
            if not part.paused and outstanding >= self._high:
                pause.append(part)
            elif part.paused and outstanding <= self._low:
                resume.append(part)
        if pause:
            consumer.pause([part.position() for part in pause])
            for part in pause:
                part.paused = True
        if resume:
            consumer.resume([part.position() for part in resume])
            for part in resume:
                part.paused = False

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        added: list[_Partition] = []
        for tp in partitions:
            if tp.topic == self.topic and tp.partition not in self._partitions:
                part = _Partition(tp.topic, tp.partition)
                self._partitions[tp.partition] = part
                added.append(part)
        log.debug("kafka subscription %s/%s: assigned %s", self.topic, self.group, [p.partition for p in added])
        self._call_soon(self._start_parts, added)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        parts = self._take(partitions)
        if not parts:
            return
        log.debug("kafka subscription %s/%s: revoked %s", self.topic, self.group, [p.partition for p in parts])
        self._stop_parts(parts, self.owner.drain_timeout)
        self._commit_final(consumer, parts)
        self._unpause(consumer, parts)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        parts = self._take(partitions)
        if not parts:
            return
        log.warning(
            "kafka subscription %s/%s: lost partitions %s", self.topic, self.group, [p.partition for p in parts]
        )
        self._stop_parts(parts, 0.0)
        self._unpause(consumer, parts)

    def _take(self, partitions: list[TopicPartition]) -> list[_Partition]:
        parts: list[_Partition] = []
        for tp in partitions:
            part = self._partitions.pop(tp.partition, None) if tp.topic == self.topic else None
            if part is not None:
                part.stopping = True
                parts.append(part)
        return parts

    def _unpause(self, consumer: Consumer, parts: list[_Partition]) -> None:
        paused = [part.position() for part in parts if part.paused]
        if paused:
            try:
                consumer.resume(paused)
            except KafkaException as exc:
                log.debug("kafka subscription %s/%s: resume: %s", self.topic, self.group, describe(exc))

    def _stop_parts(self, parts: list[_Partition], drain: float) -> None:
        """Stops the partitions' workers on the loop and waits for them (in-flight handlers get ``drain``)."""
        for part in parts:
            part.stopping = True
        if not parts:
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self._stop_workers(parts, drain), self._loop)
        except RuntimeError:  # the loop is closed: its tasks are gone
            return
        try:
            future.result(timeout=drain + 5.0)
        except (TimeoutError, concurrent.futures.CancelledError) as exc:
            log.warning("kafka subscription %s/%s: workers did not stop: %r", self.topic, self.group, exc)

    def _call_soon(self, callback: Any, *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed
            self._stopping.set()

    def _log_error(self, error: KafkaError) -> None:
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            return
        now = time.monotonic()
        if now - self._error_logged.get(code, -_ERROR_LOG_INTERVAL) >= _ERROR_LOG_INTERVAL:
            self._error_logged[code] = now
            log.warning("kafka subscription %s/%s: %s", self.topic, self.group, error.str())

    # --- event loop --------------------------------------------------------------------------------

    def _start_parts(self, parts: list[_Partition]) -> None:
        self._assigned.set()
        for part in parts:
            if not part.stopping:
                part.task = asyncio.create_task(self._work(part), name=f"kafka {self.topic}[{part.partition}]")

    def _feed(self, deliveries: list[tuple[_Partition, int, Message]]) -> None:
        for part, offset, message in deliveries:
            if part.stopping:
                continue
            part.queue.append((offset, message))
            part.wakeup.set()

    async def _work(self, part: _Partition) -> None:
        """Starts the partition's messages in order. At most ``partitionConcurrency`` of them are started
        and not yet committable (running, or done after one still running), which also bounds how many
        are delivered again after a crash."""
        limit = self.owner.partition_concurrency
        while not part.stopping:
            if not part.queue or len(part.order) >= limit:
                part.wakeup.clear()
                await part.wakeup.wait()
                continue
            offset, message = part.queue.popleft()
            part.order.append(offset)
            part.running[offset] = asyncio.create_task(self._deliver(part, offset, message))

    async def _deliver(self, part: _Partition, offset: int, message: Message) -> None:
        """Calls the handler until it returns normally (or the partition stops), then records progress."""
        delay = max(self.owner.retry_interval, 0.001)
        try:
            while True:
                part.busy.add(offset)
                try:
                    await self._handler(message)
                except asyncio.CancelledError as exc:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # stopped by us: the message stays uncommitted
                    failure: BaseException = exc  # a handler's own cancellation is a failure like any other
                except Exception as exc:
                    failure = exc
                else:
                    break
                finally:
                    part.busy.discard(offset)
                log.warning(
                    "kafka subscription %s/%s: handler failed for %s, retrying in %.1fs: %s",
                    self.topic,
                    self.group,
                    message.id,
                    delay,
                    str(failure) or type(failure).__name__,
                )
                if part.stopping:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
            part.succeeded.add(offset)
            while part.order and part.order[0] in part.succeeded:
                first = part.order.popleft()
                part.succeeded.discard(first)
                part.done = first + 1
            part.finished += 1
        finally:
            part.running.pop(offset, None)
            part.wakeup.set()

    async def _stop_workers(self, parts: list[_Partition], drain: float) -> None:
        tasks: list[asyncio.Task[None]] = []
        for part in parts:
            part.stopping = True
            part.finished += len(part.queue)
            part.queue.clear()
            if part.task is not None:
                part.task.cancel()
                tasks.append(part.task)
            for offset, task in part.running.items():
                if offset not in part.busy:  # waiting to retry: its message stays uncommitted
                    task.cancel()
                tasks.append(task)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=drain) if drain > 0 else (set(), set(tasks))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
