"""Distributed locks across real sidecar processes sharing a backend (a SQLite file, Redis, PostgreSQL):
mutual exclusion under contention, expiry, owner-only unlock and renewal, every unlock status."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.sidecars import Sidecars
from tests.services import require_postgres, require_redis
from tests.sidecar import component_yaml

BACKENDS: dict[str, Callable[[Path], tuple[str, dict[str, str]]]] = {
    "sqlite": lambda tmp: ("lock.sqlite", {"connectionString": str(tmp / "locks.db")}),
    "redis": lambda _: ("lock.redis", {"redisHost": require_redis()}),
    "postgresql": lambda _: ("lock.postgresql", {"connectionString": require_postgres(), "tableName": "e2e_lock"}),
}


# Seconds of the lock renewed before it expires: three calls must fit in them, even on a busy machine.
FIRST_EXPIRY = 3


@pytest.fixture(params=list(BACKENDS))
def sidecars(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sidecars]:
    component_type, metadata = BACKENDS[request.param](tmp_path)
    (tmp_path / "lock.yaml").write_text(component_yaml("lockstore", component_type, metadata))
    with Sidecars(tmp_path, "locker") as running:
        yield running


class Client:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url

    async def lock(self, resource: str, owner: str, expiry: int = 10) -> bool:
        body = {"resourceId": resource, "lockOwner": owner, "expiryInSeconds": expiry}
        response = await self.http.post(f"{self.url}/v1.0-alpha1/lock/lockstore", json=body)
        assert response.status_code == 200, response.text
        return bool(response.json()["success"])

    async def unlock(self, resource: str, owner: str) -> int:
        body = {"resourceId": resource, "lockOwner": owner}
        response = await self.http.post(f"{self.url}/v1.0-alpha1/unlock/lockstore", json=body)
        assert response.status_code == 200, response.text
        return int(response.json()["status"])

    async def renew(self, resource: str, owner: str, expiry: int) -> int:
        body = {"resourceId": resource, "lockOwner": owner, "expiryInSeconds": expiry}
        response = await self.http.post(f"{self.url}/v1.0-alpha1/lock/lockstore/renew", json=body)
        assert response.status_code == 200, response.text
        return int(response.json()["status"])


def clients(http: httpx.AsyncClient, sidecars: Sidecars) -> tuple[Client, Client]:
    first, second = (Client(http, url) for url in sidecars.urls)
    return first, second


async def test_one_winner_among_many_concurrent_clients_of_two_sidecars(sidecars: Sidecars) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        a, b = clients(http, sidecars)
        for _ in range(5):
            resource = uuid.uuid4().hex
            attempts = [(a if i % 2 else b).lock(resource, f"owner{i}") for i in range(60)]
            assert (await asyncio.gather(*attempts)).count(True) == 1


async def test_critical_sections_never_overlap_across_sidecars(sidecars: Sidecars) -> None:
    resource = uuid.uuid4().hex
    inside = entered = 0

    async def worker(client: Client, owner: str) -> None:
        nonlocal inside, entered
        for _ in range(5):
            while not await client.lock(resource, owner):
                await asyncio.sleep(0.002)
            inside += 1
            entered += 1
            assert inside == 1, "two owners inside the critical section"
            await asyncio.sleep(0.002)
            inside -= 1
            assert await client.unlock(resource, owner) == 0

    async with httpx.AsyncClient(timeout=30) as http:
        a, b = clients(http, sidecars)
        await asyncio.gather(*(worker(a if i % 2 else b, f"owner{i}") for i in range(16)))
    assert entered == 80


async def test_expiry_frees_the_lock_for_the_other_sidecar(sidecars: Sidecars) -> None:
    resource = uuid.uuid4().hex
    async with httpx.AsyncClient(timeout=30) as http:
        a, b = clients(http, sidecars)
        started = time.monotonic()  # before the lock is taken: its 1 s cannot end before started + 1 s
        assert await a.lock(resource, "owner-a", 1)
        assert await b.lock(resource, "owner-b") is False
        while not await b.lock(resource, "owner-b"):
            assert time.monotonic() - started < 30, "the expired lock was never freed"  # a bound on failure only
            await asyncio.sleep(0.05)
        assert time.monotonic() - started > 0.9
        assert await a.unlock(resource, "owner-a") == 2  # owner-a's lock expired; owner-b holds it now


async def test_only_the_owner_unlocks_or_renews_and_every_status(sidecars: Sidecars) -> None:
    resource = uuid.uuid4().hex
    async with httpx.AsyncClient(timeout=30) as http:
        a, b = clients(http, sidecars)
        assert await b.unlock(resource, "owner-a") == 1  # LOCK_DOES_NOT_EXIST
        assert await b.renew(resource, "owner-a", 5) == 1
        started = time.monotonic()
        assert await a.lock(resource, "owner-a", FIRST_EXPIRY)
        assert await b.unlock(resource, "owner-b") == 2  # LOCK_BELONGS_TO_OTHERS
        assert await b.renew(resource, "owner-b", 30) == 2
        assert await b.renew(resource, "owner-a", 60) == 0  # the owner may renew through any sidecar
        await asyncio.sleep(started + FIRST_EXPIRY + 0.5 - time.monotonic())  # past the first expiry ...
        assert await a.lock(resource, "owner-b") is False  # ... still held thanks to the renewal
        assert await b.unlock(resource, "owner-a") == 0  # SUCCESS
        assert await a.unlock(resource, "owner-a") == 1
        assert await a.lock(resource, "owner-b") is True
