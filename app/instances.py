"""The sidecars running on this machine, for ``layotto list`` and ``layotto stop``.

Each ``layotto run`` writes one record, ``~/.layotto/run/<pid>.json``, and deletes it when it stops. The name
registry cannot serve here: it is the chosen resolver's (``static`` and ``dns`` keep nothing) and knows only
the internal port, not the API port or the process. A record whose process is gone (killed, machine
restarted) or whose pid now belongs to another process is ignored and removed. Imports stay cheap: the CLI
reads these records without loading the server stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings

__all__ = ("Instance", "find", "register", "run_directory", "running", "terminate")


def run_directory() -> Path:
    return Path.home() / ".layotto" / "run"


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux); [] elsewhere or when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat[stat.rindex(")") + 2 :].split()


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid``, so a reused pid is not taken for the sidecar; "" where unknown."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else ""  # field 22 of proc(5)


@dataclass(frozen=True, slots=True)
class Instance:
    app_id: str
    http_port: int
    internal_port: int
    app_port: int | None
    command: str
    pid: int
    app_pid: int | None
    created: float
    start_time: str
    #: Where the sidecar serves its metrics (``--metrics-port``); None: ``--enable-metrics=false``.
    metrics_port: int | None = None
    grpc_port: int = 0  # 0 in records written before it was kept

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process: not ours any more
            return False
        fields = _stat(self.pid)
        if fields and fields[0] in ("Z", "X"):
            return False  # exited, not yet reaped by its parent
        return not self.start_time or not fields or fields[19] == self.start_time


def register(settings: Settings, command: Sequence[str], app_pid: int | None) -> Path:
    """Record this process as a running sidecar; the caller deletes the returned file when it stops."""
    directory = run_directory()
    directory.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    instance = Instance(
        app_id=settings.app_id,
        http_port=settings.http_port,
        internal_port=settings.internal_port,
        app_port=settings.app_port,
        command=" ".join(command),
        pid=pid,
        app_pid=app_pid,
        created=time.time(),
        start_time=_start_time(pid),
        metrics_port=settings.metrics_port if settings.enable_metrics else None,
        grpc_port=settings.grpc_port,
    )
    path = directory / f"{pid}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(instance)))
    temporary.replace(path)  # a reader never sees half a record
    return path


def running() -> list[Instance]:
    """Live sidecars, oldest first; stale records are deleted on the way."""
    found: list[Instance] = []
    directory = run_directory()
    if not directory.is_dir():
        return found
    for path in directory.glob("*.json"):
        try:
            instance = Instance(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue  # being written or removed right now, or not ours
        if instance.alive:
            found.append(instance)
        else:
            path.unlink(missing_ok=True)
    return sorted(found, key=lambda instance: instance.created)


def find(app_id: str) -> list[Instance]:
    return [instance for instance in running() if instance.app_id == app_id]


def terminate(instances: Sequence[Instance], timeout: float) -> list[Instance]:
    """SIGTERM each sidecar (it stops its app), wait for them to exit; those still running after ``timeout``."""
    for instance in instances:
        with contextlib.suppress(ProcessLookupError):
            os.kill(instance.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    left = list(instances)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [instance for instance in left if instance.alive]
    return left
