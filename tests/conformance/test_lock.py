"""The lock conformance suite: every lock store, through both fronts (HTTP and gRPC), held to the same behaviour.

Dapr's lock conformance (L-1..L-7) and Layotto's extra cases, plus renewal and mutual exclusion under
contention. A new store joins by adding one entry to ``STORES``; ``shared`` stores keep locks outside the
sidecar, so two sidecars see the same locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.proto.runtime.v1 import lock_pb2

from app.grpc.layotto import runtime_pb2
from tests.grpc.fronts import FRONTS, GrpcFront, grpc_front
from tests.services import require_postgres, require_redis
from tests.sidecar import Sidecar, component_yaml, running_sidecar

SUCCESS, LOCK_DOES_NOT_EXIST, LOCK_BELONGS_TO_OTHERS = 0, 1, 2


@dataclass(frozen=True)
class LockCase:
    component_type: str
    metadata: Callable[[Path], dict[str, str]]
    shared: bool = True


STORES = {
    "in-memory": LockCase("lock.in-memory", lambda _: {}, shared=False),
    "sqlite": LockCase("lock.sqlite", lambda tmp: {"connectionString": str(tmp / "lock.db")}),
    "redis": LockCase("lock.redis", lambda _: {"redisHost": require_redis()}),
    "postgresql": LockCase(
        "lock.postgresql", lambda _: {"connectionString": require_postgres(), "tableName": "conformance_lock"}
    ),
}
COMPONENT_TYPES = frozenset(case.component_type for case in STORES.values())  # checked by test_registry_coverage


@dataclass
class Locks:
    """The lock API of one sidecar through one front: HTTP, or gRPC (Dapr's TryLock/Unlock, Layotto's
    LockKeepAlive for renewals)."""

    case: LockCase
    sidecar: Sidecar
    resources: Path
    front: str = "http"
    grpc: GrpcFront | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        return self.sidecar.client

    @contextlib.asynccontextmanager
    async def sibling(self, resources: Path) -> AsyncIterator[Locks]:
        """Another sidecar (another app) on ``resources``, reached through the same front."""
        async with (
            running_sidecar(resources, grpc=self.front == "grpc") as other,
            _locks(self.case, other, resources, self.front) as locks,
        ):
            yield locks

    async def lock(self, resource: str, owner: str, expiry: int = 15) -> bool:
        if self.grpc is not None:
            request = lock_pb2.TryLockRequest(
                store_name="lockstore", resource_id=resource, lock_owner=owner, expiry_in_seconds=expiry
            )
            return (await self.grpc.dapr.TryLockAlpha1(request)).success
        body = {"resourceId": resource, "lockOwner": owner, "expiryInSeconds": expiry}
        response = await self.client.post("/v1.0-alpha1/lock/lockstore", json=body)
        assert response.status_code == 200, response.text
        return bool(response.json()["success"])

    async def unlock(self, resource: str, owner: str) -> int:
        if self.grpc is not None:
            request = lock_pb2.UnlockRequest(store_name="lockstore", resource_id=resource, lock_owner=owner)
            return int((await self.grpc.dapr.UnlockAlpha1(request)).status)
        response = await self.client.post(
            "/v1.0-alpha1/unlock/lockstore", json={"resourceId": resource, "lockOwner": owner}
        )
        assert response.status_code == 200, response.text
        return int(response.json()["status"])

    async def renew(self, resource: str, owner: str, expiry: int) -> int:
        if self.grpc is not None:
            request = runtime_pb2.LockKeepAliveRequest(
                store_name="lockstore", resource_id=resource, lock_owner=owner, expire=expiry
            )
            return int((await self.grpc.layotto.LockKeepAlive(request)).status)
        body = {"resourceId": resource, "lockOwner": owner, "expiryInSeconds": expiry}
        response = await self.client.post("/v1.0-alpha1/lock/lockstore/renew", json=body)
        assert response.status_code == 200, response.text
        return int(response.json()["status"])


@contextlib.asynccontextmanager
async def _locks(case: LockCase, sidecar: Sidecar, resources: Path, front: str) -> AsyncIterator[Locks]:
    if front == "http":
        yield Locks(case, sidecar, resources)
        return
    async with grpc_front(sidecar) as channel:
        yield Locks(case, sidecar, resources, front, channel)


def write_spec(resources: Path, case: LockCase, extra: dict[str, str] | None = None) -> None:
    (resources / "lock.yaml").write_text(
        component_yaml("lockstore", case.component_type, {**case.metadata(resources), **(extra or {})})
    )


@pytest.fixture(params=[(store, front) for store in STORES for front in FRONTS], ids="-".join)
async def locks(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Locks]:
    store, front = request.param
    case = STORES[store]
    write_spec(tmp_path, case)
    async with (
        running_sidecar(tmp_path, grpc=front == "grpc") as sidecar,
        _locks(case, sidecar, tmp_path, front) as locks,
    ):
        yield locks


def resource() -> str:
    return uuid.uuid4().hex


# -- L-1 .. L-6: taking and releasing -------------------------------------------------------------------


async def test_dapr_lock_conformance_sequence(locks: Locks) -> None:
    key1, key2 = resource(), resource()
    assert await locks.lock(key1, "conftest", 15) is True  # L-1
    assert await locks.lock(key2, "conftest", 3) is True  # L-2
    assert await locks.lock(key1, "conftest", 15) is False  # L-3: not re-entrant
    assert await locks.unlock(resource(), "conftest") == LOCK_DOES_NOT_EXIST  # L-4
    assert await locks.unlock(key1, "nonowner") == LOCK_BELONGS_TO_OTHERS  # L-5
    assert await locks.unlock(key1, "conftest") == SUCCESS  # L-6
    assert await locks.unlock(key1, "conftest") == LOCK_DOES_NOT_EXIST


async def test_another_owner_gets_the_lock_only_after_it_is_released(locks: Locks) -> None:
    key = resource()
    assert await locks.lock(key, "owner1")
    assert await locks.lock(key, "owner2") is False
    assert await locks.unlock(key, "owner1") == SUCCESS
    assert await locks.lock(key, "owner2") is True
    assert await locks.unlock(key, "owner2") == SUCCESS


# -- L-7: expiry -------------------------------------------------------------------------------------------


async def test_expiry_frees_the_lock(locks: Locks) -> None:
    key = resource()
    started = time.monotonic()
    assert await locks.lock(key, "owner1", 1)
    assert await locks.lock(key, "owner2", 10) is False
    while not await locks.lock(key, "owner2", 10):
        assert time.monotonic() - started < 5, "the lock did not expire"
        await asyncio.sleep(0.1)
    assert time.monotonic() - started >= 0.9
    # The first owner's lock is gone: it can neither release nor renew what owner2 now holds.
    assert await locks.unlock(key, "owner1") == LOCK_BELONGS_TO_OTHERS
    assert await locks.renew(key, "owner1", 10) == LOCK_BELONGS_TO_OTHERS


async def test_an_expired_lock_does_not_exist(locks: Locks) -> None:
    key = resource()
    assert await locks.lock(key, "owner1", 1)
    await asyncio.sleep(1.2)
    assert await locks.unlock(key, "owner1") == LOCK_DOES_NOT_EXIST
    assert await locks.renew(key, "owner1", 5) == LOCK_DOES_NOT_EXIST


# -- renewal (extension) -------------------------------------------------------------------------------------


async def test_only_the_owner_can_renew_and_renewal_extends_the_lock(locks: Locks) -> None:
    key = resource()
    assert await locks.renew(key, "owner1", 5) == LOCK_DOES_NOT_EXIST
    assert await locks.lock(key, "owner1", 1)
    assert await locks.renew(key, "owner2", 5) == LOCK_BELONGS_TO_OTHERS
    assert await locks.renew(key, "owner1", 3) == SUCCESS
    await asyncio.sleep(1.5)  # past the first expiry, within the renewed one
    assert await locks.lock(key, "owner2", 5) is False
    assert await locks.unlock(key, "owner1") == SUCCESS


async def test_renewal_can_also_shorten_a_lock(locks: Locks) -> None:
    key = resource()
    assert await locks.lock(key, "owner1", 60)
    assert await locks.renew(key, "owner1", 1) == SUCCESS
    await asyncio.sleep(1.2)
    assert await locks.lock(key, "owner2", 5) is True


# -- mutual exclusion ------------------------------------------------------------------------------------------


async def test_exactly_one_of_many_concurrent_clients_gets_the_lock(locks: Locks) -> None:
    key = resource()
    results = await asyncio.gather(*(locks.lock(key, f"owner{i}", 10) for i in range(50)))
    assert results.count(True) == 1


async def test_critical_sections_never_overlap(locks: Locks) -> None:
    key = resource()
    inside = 0
    entered = 0

    async def worker(owner: str) -> None:
        nonlocal inside, entered
        for _ in range(3):
            while not await locks.lock(key, owner, 10):
                await asyncio.sleep(0.005)
            inside += 1
            entered += 1
            assert inside == 1
            await asyncio.sleep(0.005)
            inside -= 1
            assert await locks.unlock(key, owner) == SUCCESS

    await asyncio.gather(*(worker(f"owner{i}") for i in range(10)))
    assert entered == 30


# -- key prefixing (L-H4) ------------------------------------------------------------------------------------------


async def test_apps_do_not_share_locks_by_default(locks: Locks) -> None:
    key = resource()
    assert await locks.lock(key, "owner1")
    async with locks.sibling(locks.resources) as other:
        assert await other.lock(key, "owner1") is True
        assert await other.unlock(key, "owner1") == SUCCESS
    assert await locks.unlock(key, "owner1") == SUCCESS


async def test_key_prefix_none_shares_locks_between_apps(locks: Locks) -> None:
    if not locks.case.shared:
        pytest.skip("the store keeps locks inside the sidecar")
    resources = locks.resources
    write_spec(resources, locks.case, {"keyPrefix": "none"})
    key = resource()
    async with locks.sibling(resources) as first, locks.sibling(resources) as second:
        assert await first.lock(key, "owner1")
        assert await second.lock(key, "owner2") is False
        assert await second.unlock(key, "owner2") == LOCK_BELONGS_TO_OTHERS
        assert await first.unlock(key, "owner1") == SUCCESS


async def test_separator_in_resource_id_is_a_store_failure(locks: Locks) -> None:
    message = "failed to try acquiring lock: input key/keyPrefix 'a||b' can't contain '||'"
    if locks.grpc is not None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await locks.lock("a||b", "o", 5)
        assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INTERNAL, message)
        return
    response = await locks.client.post(
        "/v1.0-alpha1/lock/lockstore", json={"resourceId": "a||b", "lockOwner": "o", "expiryInSeconds": 5}
    )
    assert response.status_code == 500
    assert response.json() == {
        "errorCode": "ERR_TRY_LOCK",
        "message": "failed to try acquiring lock: input key/keyPrefix 'a||b' can't contain '||'",
    }
