"""Sampling the sidecar with py-spy during a measured run (``--profile SCENARIO``), and what dominates.

py-spy attaches to the running process (root, or ptrace allowed), samples its Python stacks without
stopping it (``--nonblocking``: a little less exact, no pauses added to the measured latencies), and is
interrupted when the run ends. The collapsed stacks (``perf/results/profile-<scenario>.txt``) load into
speedscope or flamegraph.pl; the summary ranks functions by samples on top of the stack (self) and by
samples anywhere in the stack (inclusive), and packages by self samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ("Profiler", "summarize")

_RATE = 250  # samples per second


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, output: Path) -> None:
        self.pid, self.output = pid, output
        self._process: asyncio.subprocess.Process | None = None
        self.error: str | None = None

    async def start(self) -> None:
        binary = _py_spy()
        if binary is None:
            self.error = "py-spy is not installed (pip install py-spy)"
            return
        self.output.parent.mkdir(parents=True, exist_ok=True)
        options = ["--rate", str(_RATE), "--format", "raw", "--nolineno", "--nonblocking"]
        self._process = await asyncio.create_subprocess_exec(
            *[binary, "record", "--pid", str(self.pid), *options, "--output", str(self.output)],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        await asyncio.sleep(0.3)  # attaching takes a moment
        if self._process.returncode is not None and self._process.stderr is not None:
            self.error = (await self._process.stderr.read()).decode(errors="replace")[-300:]

    async def stop(self) -> dict[str, Any] | None:
        process = self._process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                await asyncio.wait_for(process.communicate(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        if not self.output.exists():
            self.error = self.error or "py-spy wrote no output"
            return None
        return summarize(self.output)


def _package(frame: str) -> str:
    """``get (building_blocks/state/redis.py)`` -> ``building_blocks``; site-packages -> the distribution."""
    path = frame[frame.rfind("(") + 1 : -1] if frame.endswith(")") else ""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if path.startswith("<") or not path:
        return path or "?"
    parts = path.split("/")
    if "python3" in path or "lib/python" in path:
        return "stdlib " + parts[-1].removesuffix(".py")
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares of the functions and packages in py-spy's collapsed stacks."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_counts[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter: Counter[str], below: int | None = None) -> list[tuple[str, float]]:
        ranked = [(name, round(100 * n / total, 1)) for name, n in counter.most_common() if below is None or n < below]
        return ranked[:top]

    # The frames every sample shares (runpy, the CLI, the event loop) say nothing: start below them.
    base = max(inclusive.values(), default=0)

    return {
        "samples": total,
        "raw": str(raw),
        "self": share(self_counts) if total else [],
        "inclusive": share(inclusive, below=base) if total else [],
        "packages": share(packages) if total else [],
    }
