"""``layotto run`` with nothing installed serves locks and ids from the embedded SQLite defaults, shared by
two local sidecars and kept across restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import free_port, layotto, stop, wait_healthy


@pytest.mark.timeout(3 * 60)  # three sidecar starts, each given wait_healthy's 60 s on a busy machine
def test_embedded_lockstore_and_sequencer(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    env = {"HOME": str(tmp_path)}
    sidecars = [layotto("--app-id", "shop", "--dapr-http-port", str(port), env=env) for port in ports]
    try:
        for port, sidecar in zip(ports, sidecars, strict=True):
            wait_healthy(port, process=sidecar)
        first, second = (f"http://127.0.0.1:{port}/v1.0-alpha1" for port in ports)
        body = {"resourceId": "cart-1", "lockOwner": "a", "expiryInSeconds": 30}
        assert httpx.post(f"{first}/lock/lockstore", json=body).json() == {"success": True}
        assert httpx.post(f"{second}/lock/lockstore", json={**body, "lockOwner": "b"}).json() == {"success": False}
        assert httpx.post(f"{second}/unlock/lockstore", json=body).json() == {"status": 0}

        assert httpx.post(f"{first}/sequencer/sequencer", json={"key": "order"}).json() == {"nextId": "1"}
        assert httpx.post(f"{second}/sequencer/sequencer", json={"key": "order"}).json() == {"nextId": "51"}
    finally:
        for sidecar in sidecars:
            code, stderr = stop(sidecar)
            assert code == 0, stderr
    data = tmp_path / ".layotto" / "data"
    with sqlite3.connect(data / "sequencer.db") as db:
        assert db.execute("SELECT value FROM sequencer WHERE key = 'sequencer|||shop||order'").fetchone() == (100,)
    assert (data / "lock.db").exists()

    again = layotto("--app-id", "shop", "--dapr-http-port", str(ports[0]), env=env)
    try:
        wait_healthy(ports[0], process=again)
        url = f"http://127.0.0.1:{ports[0]}/v1.0-alpha1/sequencer/sequencer"
        assert httpx.post(url, json={"key": "order", "options": {"increment": "STRONG"}}).json() == {"nextId": "101"}
    finally:
        stop(again)
