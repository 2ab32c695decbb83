"""What Dapr's Redis components share: connection settings read from metadata, a lean connection pool, and
error translation.

Metadata: ``redisHost`` (required, ``host:port``), ``redisPort`` (6379, when the host has no port),
``redisUsername``, ``redisPassword``, ``redisDB`` (0), ``enableTLS`` (false),
``redisMaxRetries`` / ``maxRetries`` (3), ``dialTimeout`` (5s), ``readTimeout`` (3s), ``writeTimeout``
(readTimeout), ``poolSize`` (10 per CPU), ``poolTimeout`` (readTimeout + 1s); Dapr's defaults. A timeout
<= 0 means none.

A backend that accepts connections but never answers fails a call after the timeout that applies, with a
message naming it and the address. Retries are for broken connections only: a command that timed out is
not sent again (the backend that did not answer will not answer a resend sooner, and a write may have been
applied), so a call waits at most one timeout rather than ``maxRetries + 1`` of them.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import os
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import hiredis
from redis._parsers import _AsyncHiredisParser
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis._parsers.socket import SERVER_CLOSED_CONNECTION_ERROR
from redis.asyncio import Connection, ConnectionPool, Redis, SSLConnection
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from building_blocks._common.metadata import boolean, duration, integer, read, text
from building_blocks.component import Metadata
from building_blocks.errors import ComponentError

__all__ = (
    "ComponentClient",
    "LeanConnection",
    "LeanConnectionPool",
    "LeanSSLConnection",
    "RedisSettings",
    "Script",
    "execute",
    "pool_options",
    "redis_client",
    "split_address",
    "translated",
)


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """The connection settings every Redis component reads, with Dapr's names and defaults."""

    host: str = text("redisHost", required=True)
    port: int = integer("redisPort", 6379)
    db: int = integer("redisDB", 0)
    username: str = text("redisUsername")
    password: str = text("redisPassword")
    tls: bool = boolean("enableTLS", False)
    max_retries: int = integer("redisMaxRetries", 3, "maxRetries")
    dial_timeout: float = duration("dialTimeout", 5.0)
    read_timeout: float = duration("readTimeout", 3.0)
    write_timeout: float | None = duration("writeTimeout", None)  # readTimeout's
    pool_size: int | None = integer("poolSize", None)  # 10 per CPU
    pool_timeout: float | None = duration("poolTimeout", None)  # readTimeout + 1s

    def pool_options(self) -> dict[str, Any]:
        """Keyword arguments of ``LeanConnectionPool``."""
        host, port = split_address(self.host, self.port)
        read_timeout = _timeout(self.read_timeout)
        write_timeout = self.write_timeout if self.write_timeout is not None else read_timeout or 0.0
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "db": self.db,
            "username": self.username or None,
            "password": self.password or None,
            "socket_connect_timeout": _timeout(self.dial_timeout),
            "socket_timeout": read_timeout,
            "write_timeout": _timeout(write_timeout),
            "retry": Retry(
                ExponentialWithJitterBackoff(cap=2.0, base=0.008),
                max(self.max_retries, 0),
                supported_errors=(ConnectionError,),
            ),
            "max_connections": self.pool_size if self.pool_size is not None else 10 * (os.cpu_count() or 1),
            "timeout": self.pool_timeout if self.pool_timeout is not None else (read_timeout or 0.0) + 1.0,
        }
        if self.tls:
            options["connection_class"] = LeanSSLConnection
        return options


def pool_options(meta: Metadata) -> dict[str, Any]:
    """Keyword arguments of ``LeanConnectionPool`` for the connection metadata alone."""
    return read(RedisSettings, meta).pool_options()


def _timeout(value: float) -> float | None:
    """A timeout in seconds, None for none (<= 0, as go-redis reads -1)."""
    return value if value > 0 else None


def _seconds(value: float | None) -> str:
    return f"{value:g}s"


#: hiredis packs a command's strings by growing one buffer: cheaper than redis-py's packer up to ~64 KiB in all
#: (EVALSHA with one value: 2.9 us vs 16.5 at 6 kB, 8.2 vs 14 at 64 KiB), far dearer past ~128 KiB (0.4 ms at
#: 256 kB, 9 ms at 4 MiB, where redis-py's packer takes 10-15 us as it does not copy big values).
HIREDIS_PACKS_UP_TO = 32_768  # characters or bytes in all; a character is up to 4 bytes in UTF-8


def _plain(args: tuple[Any, ...]) -> bool:
    """Whether hiredis packs ``args`` into the very bytes redis-py's encoder would, and cheaply: str, bytes and
    int only (not bool, float, memoryview or subclasses, which redis-py encodes its own way), a one-word
    command name (redis-py splits "CONFIG GET" into two arguments), ``HIREDIS_PACKS_UP_TO`` in all."""
    name = args[0]
    if (type(name) is not str and type(name) is not bytes) or not name.isalnum():
        return False
    size = 0
    for arg in args:
        kind = type(arg)
        if kind is str or kind is bytes:
            size += len(arg)
        elif kind is not int:
            return False
    return size <= HIREDIS_PACKS_UP_TO


def _sent_directly(connection: AbstractConnection, command: bytes | str | Iterable[bytes]) -> bool:
    """Hands ``command`` to the socket's transport when nothing is waiting to be written, so the write cannot
    block; redis-py's own path runs the write in a new task under ``asyncio.wait_for`` (with a socket timeout)
    every time, which costs a task and an event-loop turn per command. False: take that path.
    """
    writer = connection._writer
    if writer is None or connection.health_check_interval:
        return False
    transport = writer.transport
    if transport.is_closing() or transport.get_write_buffer_size():
        return False
    if isinstance(command, str):
        command = command.encode()
    writer.writelines((command,) if isinstance(command, bytes) else command)
    return True


class _LeanSending(AbstractConnection):
    """What ``LeanConnection`` adds to redis-py's connections: the direct write, ``writeTimeout``, timeout
    messages that say what timed out, after how long, and where, and a cheaper pack and read.

    Why the pack and read are its own: a state get (one EVALSHA through ``Script``, uvloop, in-process) cost
    70 us of CPU per call through redis-py's, 47-50 us now (a bare asyncio.Protocol with hiredis: 25 us,
    mostly the two system calls); 133k instructions per call in user space, 70k now (the bare Protocol 23k,
    asyncio's streams add 10k of them). redis-py packs in Python (~6.6 us for it, ``hiredis.pack_command``
    ~1.3 us, same bytes for str/bytes/int; ``_plain``); its read goes through three layers of
    ``read_response`` under an ``asyncio.timeout`` made per read (~6 us for the timeout alone), where
    ``_read_reply`` keeps one deadline timer per connection, armed again only when it fires early.
    """

    def __init__(self, *, write_timeout: float | None = -1.0, **options: Any) -> None:
        """``write_timeout``: seconds, None for none; negative (the default) for ``socket_timeout``."""
        super().__init__(**options)
        as_reads = write_timeout is not None and write_timeout < 0
        self.write_timeout = self.socket_timeout if as_reads else write_timeout
        encoder = self.encoder
        #: hiredis packs str as strict UTF-8, as redis-py does by default
        self._hiredis_packs = codecs.lookup(encoder.encoding).name == "utf-8" and encoder.encoding_errors == "strict"
        #: ``_read_reply`` stands in for redis-py's read with the hiredis parser and no health checks
        parser = self._parser
        self._hiredis = parser if isinstance(parser, _AsyncHiredisParser) and not self.health_check_interval else None
        #: what reads a reply under the deadline: a task, or a ``_CallNow``
        self._waiting: asyncio.Task[Any] | _CallNow | None = None
        self._deadline = 0.0  # when its read times out (loop time)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # the deadline the timer was armed for
        self._expired = False  # the timer cancelled ``_waiting``

    def unread(self) -> bool | None:
        """``can_read()`` without a coroutine when the parser is hiredis: unread data, or closed by the server.
        None: ask ``can_read()``."""
        stream = self._reader
        parser = self._hiredis
        if parser is None or stream is None or not getattr(parser, "_connected", False):
            return None
        reader: hiredis.Reader = parser._reader  # type: ignore[assignment]  # connected: not None
        return reader.has_data() or stream.at_eof() or bool(stream._buffer)  # type: ignore[attr-defined]

    def pack_command(self, *args: Any) -> list[bytes]:
        """redis-py's packing, by hiredis when that gives the same bytes; ``LARGE_COMMAND``s are redis-py's (see
        there)."""
        if self._hiredis_packs and len(args) <= LARGE_COMMAND and _plain(args):
            return [hiredis.pack_command(args)]
        return super().pack_command(*args)

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        if _sent_directly(self, command):
            writer = self._writer
            if writer is not None and writer.transport.get_write_buffer_size():
                await self._drained()  # the socket did not take it all (a large command, or a stalled backend)
            return
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        read_timeout, self.socket_timeout = self.socket_timeout, self.write_timeout  # redis-py bounds writes by it
        try:
            await super().send_packed_command(command, check_health)
        except RedisTimeoutError:
            raise RedisTimeoutError(
                self.timed_out("sending a command to", "writeTimeout", self.write_timeout)
            ) from None
        finally:
            self.socket_timeout = read_timeout

    async def _drained(self) -> None:
        """Waits, at most ``writeTimeout``, until the buffered command is (mostly) on its way."""
        assert self._writer is not None
        try:
            async with asyncio.timeout(self.write_timeout):
                await self._writer.drain()
        except TimeoutError:
            await self.disconnect(nowait=True)
            message = self.timed_out("sending a command to", "writeTimeout", self.write_timeout)
            raise RedisTimeoutError(message) from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise ConnectionError(f"Error while writing to {self._host_error()}: {exc}") from exc

    async def read_response(self, disable_decoding: bool = False, timeout: float | None = None, **options: Any) -> Any:
        parser = self._hiredis
        plain = timeout is None and not disable_decoding and not options
        if plain and parser is not None and getattr(parser, "_connected", False):
            return await self._read_reply(parser)
        try:
            return await super().read_response(disable_decoding, timeout, **options)
        except RedisTimeoutError:
            raise RedisTimeoutError(
                self.timed_out("waiting for a reply from", "readTimeout", self.socket_timeout)
            ) from None

    async def _read_reply(self, parser: _AsyncHiredisParser) -> Any:
        """redis-py's ``read_response()`` for the hiredis parser, with its errors, in one coroutine frame (each
        frame of a call costs ~1.7k instructions). A reply already buffered is taken without a timer; a wait
        for one is bounded by ``socket_timeout`` (``_deadline_armed``)."""
        reader: hiredis.Reader = parser._reader  # type: ignore[assignment]  # connected: not None
        task: asyncio.Task[Any] | None = None
        cancelling = 0
        try:
            reply = reader.gets()
            while True:
                if reply is NOT_ENOUGH_DATA:
                    stream = self._reader
                    assert stream is not None
                    if task is None:
                        task, cancelling = self._deadline_armed(stream)
                    data = await stream.read(parser._read_size)
                    if not data:
                        raise ConnectionError(SERVER_CLOSED_CONNECTION_ERROR)
                    reader.feed(data)
                    reply = reader.gets()
                elif type(reply) is hiredis.PushNotification:  # RESP3's out-of-band message: not the reply
                    await parser.handle_push_response(reply)  # type: ignore[no-untyped-call]
                    reply = reader.gets()
                else:
                    break
            if isinstance(reply, ConnectionError):
                raise reply
            if type(reply) is list and reply and isinstance(reply[0], ConnectionError):
                raise reply[0]
        except asyncio.CancelledError:
            timed_out = self._expired and task is not None and task.uncancel() <= cancelling
            await self.disconnect(nowait=True)
            if not timed_out:
                raise
            raise RedisTimeoutError(
                self.timed_out("waiting for a reply from", "readTimeout", self.socket_timeout)
            ) from None
        except TimeoutError:  # the socket's (redis-py's read takes it for its own timeout too)
            await self.disconnect(nowait=True)
            raise RedisTimeoutError(
                self.timed_out("waiting for a reply from", "readTimeout", self.socket_timeout)
            ) from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise ConnectionError(f"Error while reading from {self._host_error()} : {exc.args}") from None
        except BaseException:
            await self.disconnect(nowait=True)
            raise
        finally:
            self._waiting = None
        if isinstance(reply, ResponseError):
            raise reply from None
        return reply

    def _deadline_armed(self, stream: asyncio.StreamReader) -> tuple[asyncio.Task[Any] | None, int]:
        """The task about to wait for a reply, to be cancelled by ``_expire`` ``socket_timeout`` from now, and
        its ``cancelling()`` count; (None, 0) without a timeout. One timer per connection (not one per read,
        as ``asyncio.timeout`` makes): when it fires before the deadline of the read now waiting (a later read
        than the one it was armed for), it is armed again for that deadline."""
        timeout = self.socket_timeout
        if timeout is None:
            return None, 0
        # The stream's loop is the running one; asyncio.get_running_loop() makes a getpid() system call on Python
        # 3.11, and current_task() without a loop calls it too.
        loop: asyncio.AbstractEventLoop = stream._loop  # type: ignore[attr-defined]
        task = asyncio.current_task(loop)
        if task is None:
            return None, 0
        self._arm(loop, timeout, task)
        return task, task.cancelling()

    def _arm(self, loop: asyncio.AbstractEventLoop, timeout: float, waiting: asyncio.Task[Any] | _CallNow) -> None:
        """``waiting`` is cancelled ``timeout`` seconds from now unless its reply comes first (``_waiting`` is
        then cleared): one timer per connection, armed again when it fires early (see ``_deadline_armed``)."""
        self._deadline = deadline = loop.time() + timeout
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = loop.call_at(deadline, self._expire), deadline
        self._waiting, self._expired = waiting, False

    def _expire(self) -> None:
        self._timer = None
        waiting = self._waiting
        if waiting is None:
            return
        if self._deadline > self._timer_at:  # armed for an earlier read: this one has time left
            loop = waiting.get_loop()
            self._timer, self._timer_at = loop.call_at(self._deadline, self._expire), self._deadline
        else:
            self._expired = True
            waiting.cancel()

    async def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        try:
            await super().connect_check_health(check_health, retry_socket_connect)
        except RedisTimeoutError as exc:
            if "connecting" not in str(exc):
                raise  # the handshake's reply timed out: already said so
            timeout = self.socket_connect_timeout
            raise RedisTimeoutError(self.timed_out("connecting to", "dialTimeout", timeout)) from None

    def timed_out(self, doing: str, setting: str, seconds: float | None) -> str:
        host, port = getattr(self, "host", "?"), getattr(self, "port", "?")
        return f"timed out after {_seconds(seconds)} {doing} Redis at {host}:{port} ({setting})"


class LeanConnection(_LeanSending, Connection):
    """redis-py's connection; a command goes straight to the socket when its buffer is empty."""


class LeanSSLConnection(_LeanSending, SSLConnection):
    """``LeanConnection`` over TLS."""


class LeanConnectionPool(ConnectionPool):
    """redis-py's pool, blocking like its ``BlockingConnectionPool`` (at most ``max_connections``, a caller
    waits up to ``timeout`` seconds for one), without its per-command locks, condition waits and bookkeeping,
    which cost more CPU than the command itself. A connection is checked (connected, nothing unread) each
    time it is handed out, as redis-py does.
    """

    def __init__(self, *, timeout: float = 20.0, **options: Any) -> None:
        options.setdefault("connection_class", LeanConnection)
        super().__init__(**options)
        self.timeout = timeout
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> AbstractConnection:
        while True:
            if self._available_connections:
                connection = self._available_connections.pop()
                break
            if len(self._in_use_connections) < self.max_connections:
                connection = self.make_connection()  # type: ignore[no-untyped-call]
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(self.timeout):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken but leaving: the turn goes to the next in line
                else:
                    self._discard(waiter)
                if isinstance(exc, TimeoutError):
                    raise ConnectionError(self.exhausted()) from None
                raise
        self._in_use_connections.add(connection)
        try:
            if not connection.is_connected:
                await connection.connect()  # type: ignore[no-untyped-call]
            else:
                unread = connection.unread() if isinstance(connection, _LeanSending) else None
                if unread is None:
                    unread = await connection.can_read()
                if unread:  # unread data or closed by the server: start afresh
                    await connection.disconnect()
                    await connection.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        if connection not in self._in_use_connections:
            return  # released twice: handing it out twice would mix two callers' replies
        self._in_use_connections.remove(connection)
        if connection.should_reconnect():  # type: ignore[no-untyped-call]
            await connection.disconnect()
        self._available_connections.append(connection)
        self._wake_one()

    def take_idle(self) -> LeanConnection | None:
        """An idle connection handed out at once, when one is ready for ``call_now`` (plain TCP, connected,
        nothing unread, the hiredis parser, nothing waiting to be written); None: use ``get_connection``."""
        available = self._available_connections
        if not available:
            return None
        connection = available[-1]
        if type(connection) is not LeanConnection or connection.unread() is not False:
            return None
        if not connection._hiredis_packs:  # packed as ``pack_command`` packs it
            return None
        writer = connection._writer
        if writer is None or writer.transport.is_closing() or writer.transport.get_write_buffer_size():
            return None
        available.pop()
        self._in_use_connections.add(connection)
        return connection

    def release_now(self, connection: AbstractConnection) -> None:
        """``release`` without a coroutine when the connection is kept as it is (the usual case)."""
        if connection.should_reconnect():  # type: ignore[no-untyped-call]
            _in_background(self.release(connection))
            return
        if connection not in self._in_use_connections:
            return
        self._in_use_connections.remove(connection)
        self._available_connections.append(connection)
        self._wake_one()

    def exhausted(self) -> str:
        where = f"{self.connection_kwargs.get('host')}:{self.connection_kwargs.get('port')}"
        return (
            f"timed out after {_seconds(self.timeout)} waiting for one of the {self.max_connections} connections"
            f" to Redis at {where} (poolTimeout): all are busy"
        )

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _discard(self, waiter: asyncio.Future[None]) -> None:
        with suppress(ValueError):
            self._waiters.remove(waiter)


class Script:
    """A Lua script run with ``EVALSHA``, loaded on the server the first time it is missing there: redis-py's
    ``register_script`` without its per-call imports, type checks and copies."""

    __slots__ = ("client", "sha", "source")

    def __init__(self, client: Redis, source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str | bytes], args: Sequence[str | bytes | int | float] = ()) -> Any:
        try:
            return await execute(self.client, "EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.client.script_load(self.source)
            return await execute(self.client, "EVALSHA", self.sha, len(keys), *keys, *args)

    def call_now(self, keys: Sequence[str], reply: Reply, fallback: Fallback) -> bool:
        """``self(keys)`` from the event loop's callbacks (``call_now``), for a script that may run twice."""
        return call_now(self.client, ("EVALSHA", self.sha, len(keys), *keys), reply, fallback)


#: Hears of a ``call_now``'s reply: the reply, or the error a call would raise for it (a timeout).
Reply = Callable[[Any], None]
#: Told that a ``call_now`` ends without a reply it can give: make the call the usual way (nothing was changed).
Fallback = Callable[[], None]


def call_now(client: Redis, args: tuple[Any, ...], reply: Reply, fallback: Fallback) -> bool:
    """``execute(client, *args)`` without a task, future or coroutine: the command goes out on an idle connection
    at once and its reply is read from the stream's callbacks (``_CallNow``). For commands that may be sent
    twice (reads): what is not a plain reply (an error reply such as NOSCRIPT, a broken connection) is left to
    the usual call (``fallback``), which has the script loading and the retries. A reply that does not come
    within ``readTimeout`` is that call's timeout error (``reply``), and the connection is dropped, as
    ``execute`` does. ``False``: nothing was sent (no idle plain-TCP connection ready, or a large command).

    Measured through the sidecar's protocol lane (state get, 1 KB value; callgrind, the sidecar process alone):
    282k -> 240k instructions per request (no task, coroutine frames, stream read or pool coroutines); the
    README's benchmark section has the ``perf/run`` figures.
    """
    pool = client.connection_pool
    if type(pool) is not LeanConnectionPool or not _plain(args):
        return False
    connection = pool.take_idle()
    if connection is None:
        return False
    _CallNow(pool, connection, reply, fallback).send(hiredis.pack_command(args))
    return True


class _CallNow:
    """One command of ``call_now`` on ``connection`` (taken from ``pool``) and its reply.

    The reply is read as ``_read_reply`` reads it, but from the stream's wake-up: the stream wakes the future
    it is given as its waiter (what ``StreamReader.read`` awaits) when data, the end, or an error arrives, and
    the future's callback takes the buffered bytes."""

    __slots__ = ("connection", "fallback", "pool", "reply", "stream", "waiter")

    def __init__(self, pool: LeanConnectionPool, connection: LeanConnection, reply: Reply, fallback: Fallback) -> None:
        self.pool = pool
        self.connection = connection
        self.reply = reply
        self.fallback = fallback
        stream = connection._reader
        assert stream is not None  # connected: ``take_idle``
        self.stream: Any = stream  # its buffer and waiter are asyncio's, unannotated
        self.waiter: asyncio.Future[None] | None = None

    def send(self, packed: bytes) -> None:
        connection = self.connection
        writer = connection._writer
        assert writer is not None
        writer.transport.write(packed)
        self._wait()
        timeout = connection.socket_timeout
        if timeout is not None:
            connection._arm(self.stream._loop, timeout, self)

    def _wait(self) -> None:
        stream = self.stream
        if stream._paused:
            stream._paused = False
            stream._transport.resume_reading()
        self.waiter = waiter = stream._loop.create_future()
        stream._waiter = waiter
        waiter.add_done_callback(self._woken)

    def _woken(self, waiter: asyncio.Future[None]) -> None:
        if waiter is not self.waiter or waiter.cancelled():
            return  # timed out (``cancel``)
        stream = self.stream
        if waiter.exception() is not None:
            self._broken()
            return
        buffer = stream._buffer
        if not buffer:
            self._broken()  # the end of the stream: closed by the server
            return
        data = bytes(buffer)
        buffer.clear()
        if stream._paused:
            stream._maybe_resume_transport()
        connection = self.connection
        parser = connection._hiredis
        assert parser is not None
        reader: hiredis.Reader = parser._reader  # type: ignore[assignment]  # connected
        reader.feed(data)
        answer = reader.gets()
        if answer is NOT_ENOUGH_DATA:
            if stream._eof:
                self._broken()
            else:
                self._wait()
            return
        if connection._waiting is self:  # settled
            connection._waiting = None
        if reader.has_data() or type(answer) is hiredis.PushNotification:
            # not this call's reply alone (RESP3 sends out-of-band messages only to connections that ask for them)
            self._dropped()
            self.fallback()
            return
        self.pool.release_now(connection)
        if isinstance(answer, Exception) or (type(answer) is list and answer and isinstance(answer[0], Exception)):
            self.fallback()  # an error reply (NOSCRIPT, ...): the usual call has what it takes
        else:
            self.reply(answer)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.stream._loop  # type: ignore[no-any-return]

    def cancel(self) -> None:
        """The deadline passed (``LeanConnection._expire``): the call's timeout error, the connection dropped."""
        waiter, self.waiter = self.waiter, None
        stream = self.stream
        if stream._waiter is waiter:
            stream._waiter = None
        if waiter is not None:
            waiter.cancel()
        connection = self.connection
        self._settled()
        self._dropped()
        message = connection.timed_out("waiting for a reply from", "readTimeout", connection.socket_timeout)
        self.reply(RedisTimeoutError(message))

    def _broken(self) -> None:
        """The connection broke before the reply: the usual call makes the call again (its retries)."""
        self._settled()
        self._dropped()
        self.fallback()

    def _settled(self) -> None:
        connection = self.connection
        if connection._waiting is self:
            connection._waiting = None

    def _dropped(self) -> None:
        """The connection is closed and given back (a later call connects afresh), as ``_read_reply`` does."""
        _in_background(_dropped(self.pool, self.connection))


#: Tasks started from callbacks, kept until done (the loop holds tasks weakly).
_BACKGROUND: set[asyncio.Task[None]] = set()


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def _dropped(pool: LeanConnectionPool, connection: AbstractConnection) -> None:
    try:
        await connection.disconnect(nowait=True)
    finally:
        await pool.release(connection)


#: Commands with more arguments than this are packed off the event loop: redis-py packs in Python, ~65 ms for
#: the 54k arguments of a 4 MiB transaction's script call (and several times that on a busy machine), during
#: which no other request would be served. Below it, packing costs microseconds and stays inline (by hiredis).
#: hiredis does not make this moot: it packs those 54k arguments in 10-35 ms but holds the GIL throughout, so
#: the loop stalls as long even when it packs in a thread; redis-py's packer in a thread lets the loop run
#: (its worst pause measured 7-17 ms) at several times the CPU, which only such commands pay.
LARGE_COMMAND = 2_000


async def execute(client: Redis, *args: str | bytes | int | float) -> Any:
    """``client.execute_command(*args)`` for a command without a reply callback (the raw reply), minus redis-py's
    per-call bookkeeping: the same pool, and the same retries (the connection's ``Retry``: disconnect, back
    off, send again; ``_retried``). A command of more than ``LARGE_COMMAND`` arguments is packed in a worker
    thread."""
    pool = client.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        if len(args) > LARGE_COMMAND:
            packed = await asyncio.to_thread(connection.pack_command, *args)
        else:
            packed = connection.pack_command(*args)
        try:
            await connection.send_packed_command(packed)
            return await connection.read_response()
        except connection.retry._supported_errors as error:
            return await _retried(connection, packed, error)
    finally:
        await pool.release(connection)


async def _round_trip(connection: AbstractConnection, packed: list[bytes]) -> Any:
    await connection.send_packed_command(packed)
    return await connection.read_response()


async def _retried(connection: AbstractConnection, packed: list[bytes], error: Exception) -> Any:
    """What ``Retry.call_with_retry`` does after the first attempt failed with ``error``: disconnect, back off,
    send again, up to its number of retries. The first attempt is made outside it, as a failure is rare:
    ``call_with_retry`` costs two closures and a coroutine frame per call, ~0.6 us of the 50 (see
    ``_LeanSending``)."""
    retry = connection.retry
    retry._backoff.reset()  # type: ignore[no-untyped-call]
    failures = 0
    while True:
        failures += 1
        await connection.disconnect(error=error)
        if retry._retries >= 0 and failures > retry._retries:
            raise error
        backoff = retry._backoff.compute(failures)
        if backoff > 0:
            await asyncio.sleep(backoff)
        try:
            return await _round_trip(connection, packed)
        except retry._supported_errors as exc:
            error = exc


def redis_client(options: dict[str, Any]) -> Redis:
    """A Redis client on a ``LeanConnectionPool`` made of ``pool_options``."""
    return Redis(connection_pool=LeanConnectionPool(**options))


class ComponentClient:
    """The Redis client of one component: made in its ``init()`` (``open``), closed in its ``close()``;
    ``client`` raises ``ComponentError`` outside that window."""

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.options = options
        self._client: Redis | None = None

    def open(self) -> Redis:
        self._client = redis_client(self.options)
        return self._client

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise ComponentError(f"{self.name}: not initialised")
        return self._client

    async def ping(self) -> None:
        with translated():
            await self.client.ping()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)


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
