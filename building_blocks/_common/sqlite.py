"""What the SQLite components share: calls inline when the file is free, else on a worker thread; write transactions.

Metadata: ``connectionString`` (required: a path, ``~`` expanded, ``file:`` URI or ``:memory:``),
``busyTimeout`` (2s), ``disableWAL`` (false).

Several sidecar processes may share one file: WAL mode lets readers run beside a writer, and every
read-modify-write runs inside ``write()`` (``BEGIN IMMEDIATE``), which holds the database's write lock from
its first statement, so checks and updates are atomic across processes.

The event loop never waits on the file lock. ``run()`` first tries the call right away on a connection that
never waits (busy timeout 0): a read or a short write takes microseconds, far less than a hop to a thread.
If the database is busy (another process holds the write lock), nothing was done yet (``BEGIN IMMEDIATE``
is the first statement of every write, and a failed write rolls back), and the call is handed to a worker
thread whose connection waits up to ``busyTimeout``. ``run_in_worker()`` always uses the thread, for calls
that may take long (scans). A call given a collection of more than ``INLINE_ITEMS`` items (a bulk get, a
large transaction or configuration save) goes to the thread too: 50,000 keys take half a second, which the
loop must not spend while other requests and health probes wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from building_blocks._common.metadata import boolean, duration, text
from building_blocks.errors import ComponentError, SpecError

__all__ = ("INLINE_ITEMS", "SQLiteDatabase", "SQLiteSettings", "table_name", "write")

T = TypeVar("T")
#: How long start-up waits for the write lock to prepare a file other sidecars are preparing too.
OPEN_TIMEOUT = 30.0
INLINE_ITEMS = 64  # items one call may handle inline: well under a millisecond of work
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def table_name(name: str, where: str, field: str = "tableName") -> str:
    """``name`` when it is a plain SQL identifier; else ``SpecError`` naming the metadata ``field``."""
    if not _IDENTIFIER.match(name):
        raise SpecError(f"{where}: metadata '{field}' must be a plain SQL identifier")
    return name


@dataclass(frozen=True, slots=True)
class SQLiteSettings:
    """The connection settings every SQLite component reads (``tableName`` is each component's)."""

    connection_string: str = text("connectionString", required=True)
    busy_timeout: float = duration("busyTimeout", 2.0)
    disable_wal: bool = boolean("disableWAL", False)


class SQLiteDatabase:
    """The file named by ``connectionString``: a never-waiting connection for calls run inline on the loop,
    and one on a worker thread for busy, large or long calls (``:memory:`` has only the worker's)."""

    def __init__(self, settings: SQLiteSettings, name: str) -> None:
        self.name = name
        self._database = settings.connection_string
        self._busy_timeout = settings.busy_timeout
        self._wal = not settings.disable_wal
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None

    async def open(self, *schema: str) -> None:
        """Connect and run the ``schema`` statements (``CREATE ... IF NOT EXISTS``)."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-{self.name}")
        await self._submit(self._open, schema)
        if self._database != ":memory:":  # a second connection to :memory: would be another database
            try:
                self._inline = self._connect(0.0)
            except sqlite3.Error as exc:
                raise ComponentError(f"sqlite: {exc}") from exc

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._executor is None:
            return
        if self._connection is not None:
            await self.run(lambda connection: connection.close())
            self._connection = None
        self._executor.shutdown(wait=True)
        self._executor = None

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(connection, *args)`` now if the database is free, else on the worker thread.

        ``function`` must be short and must not commit anything before a statement that could find the
        database busy (start writes with ``write()``). SQLite errors become ``ComponentError``.
        """
        inline = self._inline
        if inline is not None and not _many_items(args):
            try:
                return function(inline, *args)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise ComponentError(f"sqlite: {exc}") from exc
            except sqlite3.Error as exc:
                raise ComponentError(f"sqlite: {exc}") from exc
        return await self.run_in_worker(function, *args)

    async def run_in_worker(self, function: Callable[..., T], *args: Any) -> T:
        """``function(connection, *args)`` on the worker thread; SQLite errors become ``ComponentError``."""
        return await self._submit(self._call, function, args)

    async def _submit(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise ComponentError(f"{self.name}: not initialised")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function, *args)
        except sqlite3.Error as exc:
            raise ComponentError(f"sqlite: {exc}") from exc

    def _call(self, function: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._connection is None:
            raise ComponentError(f"{self.name}: not initialised")
        return function(self._connection, *args)

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        database = self._database
        uri = database.startswith("file:")
        if not uri and database != ":memory:":
            path = Path(database).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            database = str(path)
        opened = sqlite3.connect(database, timeout=busy_timeout, isolation_level=None, uri=uri, check_same_thread=False)
        opened.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if self._wal and database != ":memory:":
            opened.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode, and no fsync per commit
        return opened

    def _open(self, schema: tuple[str, ...]) -> None:
        """Sidecars starting together on one file take turns preparing it: switching to WAL and creating
        tables need the write lock, which a busy, loaded machine can hold past ``busyTimeout`` (and the WAL
        switch can be refused without waiting at all), so start-up waits up to ``OPEN_TIMEOUT`` for it."""
        opened = self._connect(max(self._busy_timeout, OPEN_TIMEOUT))
        deadline = time.monotonic() + OPEN_TIMEOUT
        while True:
            try:
                if self._wal and self._database != ":memory:":
                    opened.execute("PRAGMA journal_mode = WAL")
                with write(opened):
                    for statement in schema:
                        opened.execute(statement)
                break
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() > deadline:
                    opened.close()
                    raise
                time.sleep(0.05)
        opened.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        self._connection = opened


def _many_items(args: tuple[Any, ...]) -> bool:
    return any(isinstance(arg, list | tuple | dict | set | frozenset) and len(arg) > INLINE_ITEMS for arg in args)


@contextlib.contextmanager
def write(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction holding the database's write lock from its first statement."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
