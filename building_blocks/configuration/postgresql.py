"""``configuration.postgresql``: items in a PostgreSQL table in Dapr's layout, watched with LISTEN/NOTIFY.

Table (Dapr's): ``key``, ``value``, ``version`` (text) and ``metadata`` (JSON), one row per key (when a table
made by hand has several rows for a key, the highest numeric version wins, as in Dapr). Changes reach
subscribers through a trigger that calls ``pg_notify(<notifyChannel>, {"table", "action", "data": row})``,
which is the payload of the trigger in Dapr's documentation. When the table does not exist, ``init``
creates it (with a primary key on ``key``) together with that trigger, so writes made by anyone (this
sidecar, other sidecars, ``psql``) are seen. An existing table is used as it is: its trigger is the owner's
business, as in Dapr (a warning is logged when it has none).

Saves (Layotto's extension) lock each key (advisory transaction lock), then update its row or insert one,
with the previous numeric version + 1 (``1`` for a new key). A deletion is published as ``None`` (an empty
item on the wire, as Dapr's Redis store does), so apps can tell it from an update. Payloads over
PostgreSQL's 8000-byte NOTIFY limit are sent by the trigger without the value; the store then reads the row.

Watching: one dedicated connection per component LISTENs on every channel in use (once per channel), and
is re-established if it drops (changes made while it is down are not replayed).

Metadata: ``connectionString`` (required; libpq ``key=value`` pairs or a ``postgres://`` URL), ``table``
(required; ``table`` or ``schema.table``, lower case), ``notifyChannel`` (the NOTIFY channel; else the
subscribe request's ``pgNotifyChannel`` metadata as in Dapr; else ``config``), ``timeout`` (20s),
``maxConns`` (max(4, CPUs)).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from building_blocks._common.metadata import CONFIGURATION, group, parse, text
from building_blocks._common.postgresql import DRIVER_ERRORS, PostgreSQLPool, PostgreSQLSettings
from building_blocks.component import ComponentContext, Metadata
from building_blocks.configuration.base import (
    ConfigurationItem,
    ConfigurationStore,
    DeleteRequest,
    GetRequest,
    SaveRequest,
    Subscription,
    next_version,
)
from building_blocks.errors import ComponentError, InvalidOption, SpecError

__all__ = ("PostgreSQLConfigurationStore",)

log = logging.getLogger(__name__)

_TABLE = re.compile(r"[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?", re.IGNORECASE)
_CHANNEL = re.compile(r"[a-z0-9./_]{1,63}")  # Dapr's rule for notifyChannel
_DEFAULT_CHANNEL = "config"
_RECONNECT_DELAY = 1.0

_NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION layotto_configuration_notify() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
  row_data json;
  payload text;
BEGIN
  IF TG_OP = 'DELETE' THEN row_data := row_to_json(OLD); ELSE row_data := row_to_json(NEW); END IF;
  payload := json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', row_data)::text;
  IF octet_length(payload) >= 8000 THEN
    payload := json_build_object('table', TG_TABLE_NAME, 'action', TG_OP,
                                 'data', json_build_object('key', row_data->>'key'))::text;
  END IF;
  PERFORM pg_notify(TG_ARGV[0], payload);
  RETURN NULL;
END
$body$
"""


def _string_map(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in value.items()}


def _numeric(version: str) -> int:
    try:
        return int(version)
    except ValueError:
        return -1


def _latest(rows: Sequence[asyncpg.Record]) -> dict[str, ConfigurationItem]:
    """One item per key: the row with the highest numeric version (Dapr's rule for duplicate keys)."""
    items: dict[str, ConfigurationItem] = {}
    for key, value, version, metadata in rows:
        item = ConfigurationItem(str(value), str(version), _string_map(metadata))
        known = items.get(key)
        if known is None or _numeric(item.version) > _numeric(known.version):
            items[key] = item
    return items


@dataclass(frozen=True, slots=True)
class PostgreSQLConfigurationMetadata:
    connection: PostgreSQLSettings = field(metadata=group(PostgreSQLSettings))
    table: str = text("table", required=True)
    notify_channel: str = text("notifyChannel")


class PostgreSQLConfigurationStore(ConfigurationStore):
    """Dapr's configuration table, one pool for queries and one connection for LISTEN."""

    def __init__(self, name: str, metadata: Metadata, context: ComponentContext | None = None) -> None:
        super().__init__(name, metadata, context)
        where = metadata.where
        settings = parse(PostgreSQLConfigurationMetadata, metadata, CONFIGURATION)
        table = settings.table
        if not _TABLE.fullmatch(table):
            raise SpecError(f"{where}: metadata 'table' must be 'table' or 'schema.table', got {table!r}")
        parts = table.lower().split(".")
        self._bare_table = parts[-1]
        self._table = ".".join(f'"{part}"' for part in parts)
        self._channel = settings.notify_channel
        if self._channel and not _CHANNEL.fullmatch(self._channel):
            raise SpecError(f"{where}: metadata 'notifyChannel' must match [a-z0-9./_]{{1,63}}")
        self._db = PostgreSQLPool(settings.connection, name, self._table, where)
        self._timeout = self._db.timeout
        t = self._table
        self._select = f"SELECT key, value, version, metadata FROM {t}"
        self._listener: asyncpg.Connection | None = None
        self._channels: Counter[str] = Counter()  # channel -> subscriptions
        self._channel_of: dict[str, str] = {}  # subscription id -> channel
        self._listen_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def _connect_listener(self) -> asyncpg.Connection:
        application = {"application_name": f"layotto-configuration-listen:{self._bare_table}"}
        return await self._db.connect(server_settings=application)

    async def init(self) -> None:
        await self._db.open_with(self._prepare_table)

    async def _prepare_table(self, conn: asyncpg.pool.PoolConnectionProxy) -> None:
        # The advisory lock keeps sidecars starting together from racing on the DDL (and the shared function).
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('layotto-configuration'))")
        if await conn.fetchval("SELECT to_regclass($1) IS NULL", self._table):
            channel = self._channel or _DEFAULT_CHANNEL
            await conn.execute(
                f"CREATE TABLE {self._table} (key text NOT NULL PRIMARY KEY, value text NOT NULL, "
                "version text NOT NULL, metadata json)"
            )
            await conn.execute(_NOTIFY_FUNCTION)
            await conn.execute(
                f'CREATE TRIGGER "{self._bare_table}_notify" AFTER INSERT OR UPDATE OR DELETE ON {self._table} '
                f"FOR EACH ROW EXECUTE FUNCTION layotto_configuration_notify('{channel}')"
            )
        elif not await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal", self._table
        ):
            log.warning(
                "%s: table %s has no trigger, so subscriptions will not see its changes (create one calling "
                "pg_notify, as Dapr documents, or let this component create the table)",
                self.name,
                self._table,
            )

    async def close(self) -> None:
        self._closing = True
        await super().close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await listener.close(timeout=self._timeout)
        await self._db.close()

    async def ping(self) -> None:
        async with self._db.connection("ping") as conn:
            await conn.fetchval("SELECT 1")

    # -- items -------------------------------------------------------------------------------------

    async def get(self, request: GetRequest) -> dict[str, ConfigurationItem]:
        async with self._db.connection("get") as conn:
            if request.keys:
                rows = await conn.fetch(self._select + " WHERE key = ANY($1::text[])", list(request.keys))
            else:
                rows = await conn.fetch(self._select)
        return _latest(rows)

    async def save(self, request: SaveRequest) -> None:
        t = self._table
        async with self._db.connection("save") as conn, conn.transaction():
            for key in sorted({item.key for item in request.items}):  # one lock order: no deadlock
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{t}:{key}")
            for item in request.items:
                versions = await conn.fetch(f"SELECT version FROM {t} WHERE key = $1", item.key)
                version = next_version(*(row[0] for row in versions))
                metadata = orjson.dumps(dict(item.metadata)).decode()
                status = await conn.execute(
                    f"UPDATE {t} SET value = $2, version = $3, metadata = $4::json WHERE key = $1",
                    item.key,
                    item.value,
                    version,
                    metadata,
                )
                if status == "UPDATE 0":
                    await conn.execute(
                        f"INSERT INTO {t} (key, value, version, metadata) VALUES ($1, $2, $3, $4::json)",
                        item.key,
                        item.value,
                        version,
                        metadata,
                    )

    async def delete(self, request: DeleteRequest) -> None:
        async with self._db.connection("delete") as conn:
            await conn.execute(f"DELETE FROM {self._table} WHERE key = ANY($1::text[])", list(request.keys))

    # -- watching ------------------------------------------------------------------------------------

    def _channel_for(self, metadata: Mapping[str, str]) -> str:
        if self._channel:
            return self._channel
        requested = next((v for k, v in metadata.items() if k.lower() == "pgnotifychannel"), "")
        if requested and not _CHANNEL.fullmatch(requested):
            raise InvalidOption(f"invalid notifyChannel name {requested!r}: it must match [a-z0-9./_]{{1,63}}")
        return requested or _DEFAULT_CHANNEL

    async def _listening_connection(self) -> asyncpg.Connection:
        if self._listener is None or self._listener.is_closed():
            with self._db.errors("connecting to listen"):
                listener = await self._connect_listener()
            listener.add_termination_listener(self._on_lost)
            self._listener = listener
        return self._listener

    async def _watch(self, subscription: Subscription) -> None:
        channel = self._channel_for(subscription.metadata)
        async with self._listen_lock:  # a second subscriber on a channel waits until the LISTEN is done
            self._channel_of[subscription.id] = channel
            self._channels[channel] += 1
            if self._channels[channel] > 1:
                return
            try:
                listener = await self._listening_connection()
                with self._db.errors("listening"):
                    await listener.add_listener(channel, self._on_notification)
            except BaseException:
                self._forget(subscription)
                raise

    async def _unwatch(self, subscription: Subscription) -> None:
        async with self._listen_lock:
            channel = self._forget(subscription)
            listener = self._listener
            if channel is None or channel in self._channels or listener is None or listener.is_closed():
                return
            with self._db.errors("unlistening"):
                await listener.remove_listener(channel, self._on_notification)

    def _forget(self, subscription: Subscription) -> str | None:
        channel = self._channel_of.pop(subscription.id, None)
        if channel is not None:
            self._channels[channel] -= 1
            if self._channels[channel] <= 0:
                del self._channels[channel]
        return channel

    def _on_lost(self, connection: object) -> None:
        if not self._closing and self._channels:
            log.warning("%s: the LISTEN connection was lost; reconnecting", self.name)
            self._spawn(self._relisten())

    async def _relisten(self) -> None:
        while not self._closing and self._channels:
            try:
                async with self._listen_lock:
                    listener = await self._listening_connection()
                    for channel in list(self._channels):
                        await listener.add_listener(channel, self._on_notification)
                log.info("%s: listening again on %s", self.name, ", ".join(self._channels))
                return
            except (*DRIVER_ERRORS, ComponentError) as exc:
                log.warning("%s: re-listening failed: %s", self.name, exc)
                await asyncio.sleep(_RECONNECT_DELAY)

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_notification(self, connection: object, pid: int, channel: str, payload: object) -> None:
        try:
            event = orjson.loads(str(payload))
        except orjson.JSONDecodeError:
            log.warning("%s: a notification on %s is not JSON: %.200s", self.name, channel, payload)
            return
        data = event.get("data") if isinstance(event, dict) else None
        if not isinstance(data, dict):
            log.warning("%s: a notification on %s has no row in 'data': %.200s", self.name, channel, payload)
            return
        table = event.get("table")
        if isinstance(table, str) and table.lower() != self._bare_table:
            return  # another table notifying on the same channel
        row = {str(k).lower(): v for k, v in data.items()}
        key = row.get("key")
        if not isinstance(key, str):
            return
        if str(event.get("action", "")).upper() == "DELETE":
            self._publish_on(channel, key, None)
        elif "value" not in row:  # the trigger left the row out (over NOTIFY's size limit): read it
            self._spawn(self._read_and_publish(channel, key))
        else:
            item = ConfigurationItem(str(row["value"]), str(row.get("version") or ""), _string_map(row.get("metadata")))
            self._publish_on(channel, key, item)

    async def _read_and_publish(self, channel: str, key: str) -> None:
        try:
            items = await self.get(GetRequest((key,)))
        except ComponentError as exc:
            log.warning("%s: reading changed key %r: %s", self.name, key, exc)
            return
        self._publish_on(channel, key, items.get(key))

    def _publish_on(self, channel: str, key: str, item: ConfigurationItem | None) -> None:
        self._publish(key, item, lambda subscription: self._channel_of.get(subscription.id) == channel)
