"""What the SQLite components share: one connection on its own worker thread, and write transactions.

Metadata: ``connectionString`` (required: a path, ``~`` expanded, ``file:`` URI or ``:memory:``),
``busyTimeout`` (2s), ``disableWAL`` (false).

Several sidecar processes may share one file: WAL mode lets readers run beside a writer, and every
read-modify-write runs inside ``write()`` (``BEGIN IMMEDIATE``), which holds the database's write lock from
its first statement, so checks and updates are atomic across processes. All calls run on one worker thread
per component, so the event loop never waits on the file lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from building_blocks.component import Metadata
from building_blocks.errors import ComponentError, SpecError

__all__ = ("SQLiteDatabase", "table_name", "write")

T = TypeVar("T")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def table_name(meta: Metadata, default: str) -> str:
    """``tableName`` metadata; ``SpecError`` unless it is a plain SQL identifier."""
    name = meta.text("tableName", default)
    if not _IDENTIFIER.match(name):
        raise SpecError(f"{meta.where}: metadata 'tableName' must be a plain SQL identifier")
    return name


class SQLiteDatabase:
    """One connection to the file named by ``connectionString``, used from one worker thread."""

    def __init__(self, meta: Metadata, name: str) -> None:
        self.name = name
        self._database = meta.text("connectionString", required=True)
        self._busy_timeout = meta.duration("busyTimeout", 2.0)
        self._wal = not meta.boolean("disableWAL", False)
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

    async def open(self, *schema: str) -> None:
        """Connect and run the ``schema`` statements (``CREATE ... IF NOT EXISTS``)."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-{self.name}")
        await self._submit(self._open, schema)

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._connection is not None:
            await self.run(lambda connection: connection.close())
            self._connection = None
        self._executor.shutdown(wait=True)
        self._executor = None

    async def run(self, function: Callable[..., T], *args: Any) -> T:
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

    def _open(self, schema: tuple[str, ...]) -> None:
        database = self._database
        uri = database.startswith("file:")
        if not uri and database != ":memory:":
            path = Path(database).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            database = str(path)
        opened = sqlite3.connect(
            database, timeout=self._busy_timeout, isolation_level=None, uri=uri, check_same_thread=False
        )
        opened.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        if self._wal and database != ":memory:":
            opened.execute("PRAGMA journal_mode = WAL")
            opened.execute("PRAGMA synchronous = NORMAL")
        with write(opened):
            for statement in schema:
                opened.execute(statement)
        self._connection = opened


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
