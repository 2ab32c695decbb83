"""Everything a run needs, started in one go: sidecars per role, the apps behind them, the Kafka broker.

Roles (a scenario names the roles it needs; only those are started):

==========  =====================================================================================================
default     the embedded default components (``component_specs/``, SQLite under the run's HOME), no app; started
            first and alone: its start-to-healthy time and idle RSS are the resource figures
redis       ``state.redis`` + ``pubsub.redis`` on 127.0.0.1:6379
alpha       ``lock.redis`` + ``sequencer.redis`` (only the types the registry has); a separate process, so a
            block still being built cannot keep the others from starting
kafka       ``pubsub.kafka`` on a private Kafka-protocol broker (the publisher of the Kafka scenarios)
apps        ``perf.target_app`` behind its sidecar (``pubsub-redis``, and ``pubsub-kafka`` with
            ``initialOffset: oldest`` when a broker runs): it subscribes to both end-to-end topics and is the
            target of service invocation (``POST /echo``), which callers reach through the ``default`` sidecar,
            so a call crosses two sidecars (found through the embedded default name resolution, under HOME)
baseline    ``perf.baseline_app`` (bare ASGI) on the same Redis key and SQLite file as the sidecars
==========  =====================================================================================================

A role that fails to start is recorded with its reason; the scenarios needing it are reported as skipped.
"""

from __future__ import annotations

import asyncio
import compileall
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from perf.processes import ROOT, Process, Processes, StartError, free_port, write_resources
from perf.procfs import rss_mb

__all__ = ("ALPHA_TYPES", "Env", "Unavailable")

REDIS = os.environ.get("LAYOTTO_TEST_REDIS", "127.0.0.1:6379")
ALPHA_TYPES = {"lock": ("lockstore", "lock.redis"), "sequencer": ("sequencer", "sequencer.redis")}
APP_IDS = {
    "default": "perf-default",
    "redis": "perf-redis",
    "alpha": "perf-alpha",
    "kafka": "perf-kafka",
    "apps": "perf-app",
}
IDLE_SETTLE = 2.0  # seconds after healthy before the idle RSS is read


def compile_bytecode() -> None:
    """Byte-compile the sidecar's packages before the timed start, as pip does when it installs them (and as
    the image has them): a checkout run under ``PYTHONDONTWRITEBYTECODE`` otherwise compiles its ~120 modules
    from source at every start (1.58e9 instructions to import ``app.serve`` instead of 0.99e9), so whether a
    ``__pycache__`` happened to be left in the tree decided the start-to-healthy figure."""
    for package in ("app", "building_blocks", "component_specs"):
        compileall.compile_dir(ROOT / package, quiet=1)


class Unavailable(Exception):
    """A role this scenario needs is not running; the message says why."""


def registered_types() -> set[str]:
    from building_blocks.registry import COMPONENTS

    return set(COMPONENTS)


@dataclass
class Env:
    procs: Processes
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    sidecars: dict[str, Process] = field(default_factory=dict)
    apps: dict[str, Process] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    idle_rss: dict[str, float] = field(default_factory=dict)
    brokers: str | None = None
    alpha_types: dict[str, str] = field(default_factory=dict)  # "lock" -> store name, for registered types

    @property
    def redis(self) -> str:
        return REDIS

    def topic(self, purpose: str) -> str:
        return f"perf-{purpose}-{self.run_id}"

    def app_id(self, role: str) -> str:
        return APP_IDS[role]

    def sidecar(self, role: str) -> Process:
        if role in self.failures:
            raise Unavailable(self.failures[role])
        process = self.sidecars.get(role)
        if process is None or not process.alive:
            raise Unavailable(f"the {role} sidecar is not running")
        return process

    def app(self, role: str) -> Process:
        if role in self.failures:
            raise Unavailable(self.failures[role])
        process = self.apps.get(role)
        if process is None or not process.alive:
            raise Unavailable(f"the {role} app is not running")
        return process

    def sqlite_path(self) -> Path:
        """The embedded default's SQLite state file, under the run's HOME."""
        for spec in sorted((ROOT / "component_specs").glob("*.y*ml")):
            for document in yaml.safe_load_all(spec.read_text()):
                if isinstance(document, dict) and document.get("spec", {}).get("type") == "state.sqlite":
                    for item in document["spec"].get("metadata", []):
                        if item.get("name") == "connectionString":
                            return Path(str(item["value"]).replace("~", str(self.procs.home), 1))
        return self.procs.home / ".layotto" / "data" / "state.db"

    # --- start-up ---------------------------------------------------------------------------------------------

    async def start(self, roles: set[str], log: Any) -> None:
        """Starts ``default`` alone (timed, its bytecode compiled first), then every other role at once."""
        await asyncio.to_thread(compile_bytecode)
        await self._attempt("default", self._default())
        if "default" in self.sidecars:
            took = self.sidecars["default"].healthy_after or 0.0
            log(f"  default sidecar healthy in {took:.2f} s")
        starters = []
        if roles & {"kafka", "apps"}:
            await self._attempt("broker", self._broker())
        for role in sorted(roles - {"default", "broker"}):
            starters.append(self._attempt(role, getattr(self, "_" + role.replace("-", "_"))()))
        await asyncio.gather(*starters)
        await self._read_idle_rss()
        for role, reason in sorted(self.failures.items()):
            log(f"  {role}: not started ({reason})")

    async def _attempt(self, role: str, starting: Any) -> None:
        try:
            await starting
        except (StartError, Unavailable, OSError) as exc:
            self.failures[role] = str(exc)

    async def _read_idle_rss(self) -> None:
        """The default sidecar's RSS 2 s after it was healthy; the others' right after all started."""
        for role, process in self.sidecars.items():
            if role == "default":
                wait = (process.healthy_at or time.monotonic()) + IDLE_SETTLE - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            rss = rss_mb(process.pid)
            if rss is not None:
                self.idle_rss[role] = rss

    def _folder(self, role: str, components: list[tuple[str, str, dict[str, str]]]) -> Path:
        return write_resources(self.procs.workdir / "resources" / role, components)

    async def _default(self) -> None:
        self.sidecars["default"] = await self.procs.sidecar("sidecar-default", APP_IDS["default"], None)

    async def _broker(self) -> None:
        self.brokers = await self.procs.kafka_broker()
        await asyncio.to_thread(self._create_topics, [self.topic("publish-kafka"), self.topic("e2e-kafka")])

    def _create_topics(self, topics: list[str]) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

        assert self.brokers is not None
        admin = AdminClient({"bootstrap.servers": self.brokers})
        for future in admin.create_topics([NewTopic(t, num_partitions=4) for t in topics]).values():
            future.result(timeout=15)

    def _kafka_metadata(self, **extra: str) -> dict[str, str]:
        if self.brokers is None:
            raise Unavailable(self.failures.get("broker", "no Kafka broker"))
        return {"brokers": self.brokers, "authType": "none", **extra}

    async def _redis(self) -> None:
        folder = self._folder(
            "redis",
            [
                ("statestore", "state.redis", {"redisHost": self.redis}),
                ("pubsub", "pubsub.redis", {"redisHost": self.redis}),
            ],
        )
        self.sidecars["redis"] = await self.procs.sidecar("sidecar-redis", APP_IDS["redis"], folder)

    async def _alpha(self) -> None:
        known = registered_types()
        components = []
        for block, (store, component_type) in ALPHA_TYPES.items():
            if component_type in known:
                self.alpha_types[block] = store
                components.append((store, component_type, {"redisHost": self.redis}))
        if not components:
            raise Unavailable("no lock.redis / sequencer.redis component is registered yet")
        folder = self._folder("alpha", components)
        self.sidecars["alpha"] = await self.procs.sidecar("sidecar-alpha", APP_IDS["alpha"], folder)

    async def _kafka(self) -> None:
        folder = self._folder("kafka", [("pubsub", "pubsub.kafka", self._kafka_metadata())])
        self.sidecars["kafka"] = await self.procs.sidecar("sidecar-kafka", APP_IDS["kafka"], folder)

    async def _apps(self) -> None:
        components = [("pubsub-redis", "pubsub.redis", {"redisHost": self.redis})]
        args = ["--subscribe", f"pubsub-redis={self.topic('e2e-redis')}"]
        if self.brokers is not None:
            components.append(("pubsub-kafka", "pubsub.kafka", self._kafka_metadata(initialOffset="oldest")))
            args += ["--subscribe", f"pubsub-kafka={self.topic('e2e-kafka')}"]
        folder = self._folder("apps", components)
        port = free_port()  # the app and its sidecar start together; the sidecar is healthy once the app listens
        self.apps["apps"], self.sidecars["apps"] = await asyncio.gather(
            self.procs.python_app("app-target", "perf.target_app", args, port),
            self.procs.sidecar("sidecar-apps", APP_IDS["apps"], folder, port),
        )

    async def _baseline(self) -> None:
        args = ["--redis", self.redis, "--redis-app-id", APP_IDS["redis"]]
        args += ["--sqlite", str(self.sqlite_path()), "--sqlite-app-id", APP_IDS["default"]]
        self.apps["baseline"] = await self.procs.python_app("app-baseline", "perf.baseline_app", args)

    # --- clean-up ---------------------------------------------------------------------------------------------

    async def cleanup_redis(self) -> None:
        """Deletes the streams and keys this run created in the shared Redis."""
        from perf.clients import redis_client

        client = redis_client(self.redis, 2)
        try:
            keys = [self.topic("publish-redis"), self.topic("e2e-redis")]
            async for key in client.scan_iter(match=f"*perf-*{self.run_id}*"):
                keys.append(key.decode() if isinstance(key, bytes) else key)
            await client.delete(*keys)
        finally:
            await client.aclose()
