"""The embedded default configuration store across real processes: two ``layotto run`` sidecars with nothing
installed share ``~/.layotto/data/configuration.db``; a write through one reaches the app subscribed through
the other, and a write by a plain ``sqlite3`` client reaches it too."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy
from tests.subscriber_app import SubscriberApp, serving

START_TIMEOUT = 60  # seconds; like UPDATE_TIMEOUT, a bound on failure only: a busy machine is slow, not wrong
UPDATE_TIMEOUT = 30


@pytest.mark.timeout(2 * START_TIMEOUT + 2 * UPDATE_TIMEOUT)
async def test_two_default_sidecars_share_configuration_and_its_updates(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    writer_port, subscriber_port = free_port(), free_port()
    async with serving(SubscriberApp()) as app:
        writer = layotto("--app-id", "writer", "--dapr-http-port", str(writer_port), env=env)
        subscriber = layotto(
            "--app-id", "reader", "--app-port", str(app.port), "--dapr-http-port", str(subscriber_port), env=env
        )
        try:
            await asyncio.gather(
                asyncio.to_thread(wait_healthy, writer_port, START_TIMEOUT, writer),
                asyncio.to_thread(wait_healthy, subscriber_port, START_TIMEOUT, subscriber),
            )
            async with httpx.AsyncClient(timeout=30) as client:
                base = "/v1.0/configuration/configstore"
                subscribed = await client.get(f"http://127.0.0.1:{subscriber_port}{base}/subscribe?key=color")
                assert subscribed.status_code == 200, subscribed.text
                subscription = subscribed.json()["id"]

                saved = await client.post(
                    f"http://127.0.0.1:{writer_port}/v1.0-alpha1/configuration/configstore",
                    json={"items": [{"key": "color", "value": "blue"}]},
                )
                assert saved.status_code == 204, saved.text
                [update] = await app.wait_for("/configuration/configstore/color", 1, timeout=UPDATE_TIMEOUT)
                assert update.event == {"id": subscription, "items": {"color": {"value": "blue", "version": "1"}}}

                database = tmp_path / ".layotto" / "data" / "configuration.db"
                with sqlite3.connect(database) as connection:
                    connection.execute("UPDATE configuration SET value = 'red', version = '5' WHERE key = 'color'")
                updates = await app.wait_for("/configuration/configstore/color", 2, timeout=UPDATE_TIMEOUT)
                assert updates[1].event["items"] == {"color": {"value": "red", "version": "5"}}

                got = await client.get(f"http://127.0.0.1:{writer_port}{base}?key=color")
                assert got.json() == {"color": {"value": "red", "version": "5"}}
        finally:
            codes = [await asyncio.to_thread(stop, process) for process in (writer, subscriber)]
    assert [code for code, _ in codes] == [0, 0], [stderr for _, stderr in codes]
